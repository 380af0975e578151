"""Effective-temperature fits (Section 3.4): peak recovery, R², and the no-peak cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from ssd.analysis import teff

T_TRAINS = (0.5, 0.7, 1.0, 1.5, 2.0)
T_EVALS = tuple(np.round(np.linspace(0.6, 1.5, 10), 2))


def synthetic(peak: float, top: float, curvature: float, group: str, noise: float, seed: int):
    """A full (T_train, T_eval) grid whose pass@1 is a parabola in T_eff plus seeded noise."""
    rng = np.random.default_rng(seed)
    records = []
    for t_train in T_TRAINS:
        for t_eval in T_EVALS:
            x = t_train * t_eval
            y = top - curvature * (x - peak) ** 2 + noise * rng.standard_normal()
            records.append(teff.ResultRecord(t_train, t_eval, y, group))
    return records


def test_effective_temperature_is_the_product():
    rec = teff.as_record({"t_train": 1.5, "t_eval": 0.8, "pass_at_1": 0.4, "group": "none"})
    assert rec.t_eff == pytest.approx(1.2)
    assert teff.effective_temperature(2.0, 1.1) == pytest.approx(2.2)


def test_known_peaks_are_recovered_per_group():
    records = synthetic(1.2, 0.45, 0.25, "no truncation", noise=0.004, seed=0)
    records += synthetic(1.6, 0.50, 0.15, "top-k=10", noise=0.004, seed=1)
    # Mixed input kinds: dicts and attribute objects are accepted as well.
    mixed = [vars(r) if i % 3 == 0 else SimpleNamespace(**vars(r)) for i, r in enumerate(records)]
    fits = teff.fit_groups(mixed)
    assert list(fits) == ["no truncation", "top-k=10"]
    for name, (peak, top) in {"no truncation": (1.2, 0.45), "top-k=10": (1.6, 0.50)}.items():
        fit = fits[name]
        assert fit.shape == "concave" and fit.peak_in_range
        assert fit.peak_t_eff == pytest.approx(peak, abs=0.02)
        assert fit.peak_value == pytest.approx(top, abs=0.02)
        assert fit.n_points == len(T_TRAINS) * len(T_EVALS)
        assert fit.r_squared > 0.9
    rows = teff.summary_rows(fits)
    assert [r["group"] for r in rows] == list(fits)


def test_r_squared_matches_direct_computation():
    records = synthetic(1.1, 0.4, 0.2, "g", noise=0.03, seed=5)
    fit = teff.fit_groups(records)["g"]
    x = np.array([r.t_eff for r in records])
    y = np.array([r.pass_at_1 for r in records])
    design = np.stack([x**2, x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(fit.coefficients, coef, atol=1e-9)
    y_hat = design @ coef
    direct = 1 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean()) ** 2)
    assert fit.r_squared == pytest.approx(direct, abs=1e-12)
    # For least squares with an intercept R² is also the squared correlation of y and ŷ.
    assert fit.r_squared == pytest.approx(np.corrcoef(y, y_hat)[0, 1] ** 2, abs=1e-12)
    assert 0 < fit.r_squared < 1  # the noise is real: not a perfect fit


def test_convex_linear_and_degenerate_cases_report_no_peak():
    x = np.linspace(0.4, 2.4, 12)
    convex = teff.fit_quadratic(x, 0.2 + 0.1 * (x - 1.0) ** 2)
    assert convex.shape == "convex" and convex.peak_t_eff is None and convex.peak_value is None
    assert "no peak" in convex.note
    line = teff.fit_quadratic(x, 0.1 + 0.2 * x)
    assert line.shape == "linear" and line.peak_t_eff is None
    assert line.r_squared == pytest.approx(1.0, abs=1e-12)
    # (1.0, 2.0) and (2.0, 1.0) share T_eff = 2: only two distinct T_eff values.
    few = teff.fit_groups(
        [
            teff.ResultRecord(1.0, 2.0, 0.3),
            teff.ResultRecord(2.0, 1.0, 0.35),
            teff.ResultRecord(1.0, 1.0, 0.4),
        ]
    )[teff.DEFAULT_GROUP]
    assert few.shape == "underdetermined" and few.peak_t_eff is None
    assert all(math.isnan(c) for c in few.coefficients)
    flat = teff.fit_quadratic(x, np.full_like(x, 0.3))
    assert math.isnan(flat.r_squared) and flat.peak_t_eff is None


def test_vertex_outside_the_data_is_flagged():
    x = np.linspace(0.5, 1.0, 8)
    fit = teff.fit_quadratic(x, 0.5 - 0.3 * (x - 1.8) ** 2)
    assert fit.shape == "concave"
    assert fit.peak_t_eff == pytest.approx(1.8, abs=1e-9)
    assert not fit.peak_in_range and "outside" in fit.note


def test_missing_fields_are_rejected():
    with pytest.raises(ValueError, match="pass_at_1"):
        teff.as_record({"t_train": 1.0, "t_eval": 1.0})


def test_plot_teff(tmp_path):
    records = synthetic(1.2, 0.45, 0.25, "none", noise=0.01, seed=2)
    records += synthetic(1.5, 0.5, 0.2, "top-p=0.8", noise=0.01, seed=3)
    out = teff.plot_teff(records, tmp_path / "sub" / "fig3a.png", baseline=0.424)
    assert out.exists() and out.stat().st_size > 5_000
