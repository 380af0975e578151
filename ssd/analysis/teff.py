"""Effective temperature T_eff = T_train · T_eval and its quadratic fit (Section 3.4, Fig. 3a).

Why: under local ideal fit the student decoded at T_eval behaves, inside the retained support,
like the teacher at T_train · T_eval (Prop. B.2). The paper tests this by plotting pass@1 against
T_eff and fitting one quadratic per regime (no truncation: R² = 0.75, peak near T_eff ≈ 1.2).
This module turns a list of sweep results into those fits, with the peak reported only when the
fitted parabola actually has a maximum.

The cores are pure; ``plot_teff`` is the only function that touches the file system.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssd.plotting import pyplot, save_figure

DEFAULT_GROUP = "all"
# A leading coefficient this small (relative to the data's scale) is treated as a straight line.
_FLAT_CURVATURE = 1e-12


@dataclass(frozen=True)
class ResultRecord:
    """One evaluated (T_train, T_eval) cell of a sweep."""

    t_train: float
    t_eval: float
    pass_at_1: float  # the score fitted and plotted (pass@k in a pass@k panel: ``TeffPanel``)
    group: str = DEFAULT_GROUP  # e.g. the training-time truncation ("none", "top-k=10", ...)

    @property
    def t_eff(self) -> float:
        return effective_temperature(self.t_train, self.t_eval)


def effective_temperature(t_train: float, t_eval: float) -> float:
    """T_eff = T_train · T_eval: temperatures compose multiplicatively (Lemma B.1, Prop. B.2)."""
    return float(t_train) * float(t_eval)


def as_record(item: ResultRecord | Mapping[str, Any] | Any) -> ResultRecord:
    """Accept a ResultRecord, a mapping or any object with the four fields (group optional)."""
    if isinstance(item, ResultRecord):
        return item

    def get(name: str, default: Any = None) -> Any:
        if isinstance(item, Mapping):
            return item.get(name, default)
        return getattr(item, name, default)

    missing = [f for f in ("t_train", "t_eval", "pass_at_1") if get(f) is None]
    if missing:
        raise ValueError(f"result record {item!r} lacks {missing}")
    return ResultRecord(
        float(get("t_train")),
        float(get("t_eval")),
        float(get("pass_at_1")),
        str(get("group") or DEFAULT_GROUP),
    )


@dataclass(frozen=True)
class QuadraticFit:
    """pass@1 ≈ a·T_eff² + b·T_eff + c for one group.

    ``shape`` is one of:

    - ``"concave"`` (a < 0): a maximum exists; ``peak_t_eff`` = -b / 2a, ``peak_value`` = c - b²/4a,
      and ``peak_in_range`` says whether the vertex lies inside the observed T_eff range;
    - ``"convex"`` (a > 0): the vertex is a minimum, so there is no peak;
    - ``"linear"`` (a ≈ 0): no curvature, no peak;
    - ``"underdetermined"``: fewer than 3 distinct T_eff values, no fit (coefficients NaN).

    ``note`` states the outcome in words, for reports.
    """

    group: str
    coefficients: tuple[float, float, float]  # (a, b, c), numpy.polyfit order
    r_squared: float
    n_points: int
    t_eff_range: tuple[float, float]
    shape: str
    peak_t_eff: float | None
    peak_value: float | None
    peak_in_range: bool
    note: str

    def predict(self, t_eff: np.ndarray | float) -> np.ndarray:
        return np.polyval(np.array(self.coefficients), t_eff)


def r_squared(y: np.ndarray, y_hat: np.ndarray) -> float:
    """1 - SS_res / SS_tot; NaN when y is constant (the ratio is undefined)."""
    if y.size == 0 or np.ptp(y) == 0.0:  # SS_tot would be 0 up to rounding of the mean
        return math.nan
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - y_hat) ** 2).sum()) / ss_tot


def fit_quadratic(
    t_eff: Sequence[float], pass_at_1: Sequence[float], group: str = DEFAULT_GROUP
) -> QuadraticFit:
    """Least-squares quadratic in T_eff, with its vertex classified and interpreted."""
    x = np.asarray(t_eff, dtype=np.float64)
    y = np.asarray(pass_at_1, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("t_eff and pass_at_1 must be 1-D and the same length")
    span = (float(x.min()), float(x.max())) if x.size else (math.nan, math.nan)
    if np.unique(x).size < 3:
        return QuadraticFit(
            group,
            (math.nan,) * 3,
            math.nan,
            int(x.size),
            span,
            "underdetermined",
            None,
            None,
            False,
            f"only {np.unique(x).size} distinct T_eff value(s): a quadratic needs 3",
        )
    a, b, c = (float(v) for v in np.polyfit(x, y, 2))
    r2 = r_squared(y, np.polyval([a, b, c], x))
    scale = max(float(np.abs(y).max()), 1e-300) / max(float(np.abs(x).max()) ** 2, 1e-300)
    if abs(a) <= _FLAT_CURVATURE * scale:
        return QuadraticFit(
            group,
            (a, b, c),
            r2,
            int(x.size),
            span,
            "linear",
            None,
            None,
            False,
            "no curvature (a ≈ 0): pass@1 is monotone in T_eff, no peak",
        )
    if a > 0:
        return QuadraticFit(
            group,
            (a, b, c),
            r2,
            int(x.size),
            span,
            "convex",
            None,
            None,
            False,
            f"convex fit (a = {a:.3g} > 0): the vertex is a minimum, no peak",
        )
    peak = -b / (2 * a)
    value = c - b * b / (4 * a)
    inside = span[0] <= peak <= span[1]
    note = f"peak at T_eff = {peak:.3f} ({value:.4g})"
    if not inside:
        note += f", outside the observed range [{span[0]:.3g}, {span[1]:.3g}] (extrapolated)"
    return QuadraticFit(
        group, (a, b, c), r2, int(x.size), span, "concave", peak, value, inside, note
    )


def group_records(
    records: Iterable[ResultRecord | Mapping[str, Any] | Any],
) -> dict[str, list[ResultRecord]]:
    """Records by group, in first-seen order."""
    groups: dict[str, list[ResultRecord]] = {}
    for item in records:
        record = as_record(item)
        groups.setdefault(record.group, []).append(record)
    return groups


def fit_groups(
    records: Iterable[ResultRecord | Mapping[str, Any] | Any],
) -> dict[str, QuadraticFit]:
    """One quadratic fit of pass@1 against T_eff per group (Fig. 3a's curves)."""
    return {
        name: fit_quadratic([r.t_eff for r in rows], [r.pass_at_1 for r in rows], name)
        for name, rows in group_records(records).items()
    }


def summary_rows(fits: Mapping[str, QuadraticFit]) -> list[dict[str, Any]]:
    """Flat rows (one per group) for tables and logs."""
    return [
        {
            "group": f.group,
            "n": f.n_points,
            "a": f.coefficients[0],
            "b": f.coefficients[1],
            "c": f.coefficients[2],
            "r_squared": f.r_squared,
            "shape": f.shape,
            "peak_t_eff": f.peak_t_eff,
            "peak_value": f.peak_value,
            "note": f.note,
        }
        for f in fits.values()
    ]


@dataclass(frozen=True)
class TeffPanel:
    """One panel of a T_eff figure: its score's name (the y label: "pass@1", "pass@5"), its
    records (``pass_at_1`` holding that score), a dashed reference line and fits (computed from
    the records when None)."""

    metric: str
    records: Sequence[ResultRecord | Mapping[str, Any] | Any]
    baseline: float | None = None
    fits: Mapping[str, QuadraticFit] | None = None


def plot_teff(
    records: Iterable[ResultRecord | Mapping[str, Any] | Any],
    path: str | Path,
    baseline: float | None = None,
    fits: Mapping[str, QuadraticFit] | None = None,
) -> Path:
    """Write a Figure-3a-style scatter: pass@1 vs T_eff per group, with each group's quadratic.

    Concave fits get their peak marked; ``baseline`` (e.g. the base model's pass@1) is dashed.
    """
    return plot_teff_panels([TeffPanel("pass@1", list(records), baseline, fits)], path)


def plot_teff_panels(panels: Sequence[TeffPanel], path: str | Path) -> Path:
    """``plot_teff``'s scatter and fits once per panel, side by side (Figure 3a with its pass@5
    panel: the grid report)."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5),
                             constrained_layout=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw_teff(ax, panel)
    return save_figure(fig, path, dpi=120)


def _draw_teff(ax: Any, panel: TeffPanel) -> None:
    plt = pyplot()
    groups = group_records(panel.records)
    fits = (
        dict(panel.fits)
        if panel.fits is not None
        else fit_groups(r for rows in groups.values() for r in rows)
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, rows) in enumerate(groups.items()):
        color = colors[i % len(colors)]
        x = np.array([r.t_eff for r in rows])
        y = np.array([r.pass_at_1 for r in rows])
        fit = fits.get(name)
        label = name
        if fit is not None and fit.shape != "underdetermined":
            label = f"{name} (R²={fit.r_squared:.2f})"
            xs = np.linspace(x.min(), x.max(), 200)
            ax.plot(xs, fit.predict(xs), color=color)
            if fit.peak_t_eff is not None and fit.peak_value is not None and fit.peak_in_range:
                ax.plot(fit.peak_t_eff, fit.peak_value, marker="*", markersize=12, color=color)
        ax.scatter(x, y, color=color, alpha=0.7, label=label)
    if panel.baseline is not None:
        ax.axhline(panel.baseline, color="black", linestyle="--", linewidth=1, label="baseline")
    ax.set_xlabel("T_eff = T_train · T_eval")
    ax.set_ylabel(panel.metric)
    ax.legend(fontsize=8)
