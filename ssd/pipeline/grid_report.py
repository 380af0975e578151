"""The grid report: every cell's pass@k, the T_eff fits, heat maps and the Section 3.3 comparison.

``GridReport`` is the Hydra callback (``hydra.callbacks`` in conf/pipeline.yaml) that runs once a
pipeline.py multirun has ended; ``write_grid_report(sweep_dir)`` does the work from the jobs'
``cell.json`` files alone, so it also runs after a SLURM array (or by hand on a partial sweep).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ssd.analysis import ResultRecord, fit_groups, plot_teff, summary_rows
from ssd.passk import UNLABELED
from ssd.pipeline.grid import CELL_FILE
from ssd.pipeline.report import percent, table
from ssd.plotting import pyplot, save_figure

GRID_MD = "grid.md"
GRID_JSON = "grid.json"
TEFF_PNG = "teff.png"


def read_cells(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's cell.json under ``sweep_dir`` (a job that did not finish has none)."""
    cells = []
    for path in sorted(sweep_dir.rglob(CELL_FILE)):
        try:
            cells.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            print(f"pipeline report: skipping {path} ({error})")
    return cells


def _pass(block: Mapping[str, Any] | None, k: int) -> float:
    value = (block or {}).get(f"pass@{k}")
    return math.nan if value is None else float(value)


def grid_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (T_train, truncation, checkpoint, T_eval), sorted; duplicates (the same cell
    in two jobs) once."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in cells:
        for e in cell["evaluations"]:
            key = (cell["truncation"], cell["t_train"], e["step"], cell["t_eval"])
            rows[key] = {
                "truncation": cell["truncation"], "t_train": cell["t_train"],
                "checkpoint": e["checkpoint"], "step": e["step"], "t_eval": cell["t_eval"],
                "t_eff": cell["t_train"] * cell["t_eval"],
                "pass@1": _pass(e["overall"], 1), "pass@5": _pass(e["overall"], 5),
                "per_difficulty": {d: _pass(b, 1) for d, b in e["per_difficulty"].items()},
            }
    return [rows[k] for k in sorted(rows)]


def best_over_checkpoints(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (T_train, truncation, T_eval), the checkpoint with the highest pass@1 (the paper reads
    the best iteration); ties go to the earlier step."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["truncation"], row["t_train"], row["t_eval"])
        if key not in best or row["pass@1"] > best[key]["pass@1"]:
            best[key] = row
    return [best[k] for k in sorted(best)]


def base_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The base model's decode-only results, one per (T_eval, evaluation truncation)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in cells:
        if cell.get("base"):
            key = (cell["t_eval"], cell["eval_truncation"])
            rows[key] = {"t_eval": cell["t_eval"], "truncation": cell["eval_truncation"],
                         "pass@1": _pass(cell["base"]["overall"], 1),
                         "pass@5": _pass(cell["base"]["overall"], 5)}
    return [rows[k] for k in sorted(rows)]


def _best(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if not math.isnan(r["pass@1"])]
    return max(scored, key=lambda r: r["pass@1"], default=None)


def _num(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:g}"


def teff_records(best_rows: Sequence[dict[str, Any]]) -> list[ResultRecord]:
    """The best-checkpoint cells as T_eff points, grouped by training truncation (Figure 3a)."""
    return [ResultRecord(r["t_train"], r["t_eval"], r["pass@1"], r["truncation"])
            for r in best_rows if not math.isnan(r["pass@1"])]


def training_set_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each (T_train, truncation) trained on: samples, ended by the model, cut at
    max_tokens and trained open (train.py's record of its training set), once each."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in cells:
        found = cell.get("training_set")
        if found:
            rows[(cell["truncation"], cell["t_train"])] = {
                "t_train": cell["t_train"], "truncation": cell["truncation"], **found}
    return [rows[key] for key in sorted(rows)]


def build_grid_report(cells: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The markdown and the JSON summary of a grid's cells."""
    rows = grid_rows(cells)
    best_rows = best_over_checkpoints(rows)
    bases = base_rows(cells)
    fits = fit_groups(teff_records(best_rows))
    fit_table = summary_rows(fits)
    best, base_best = _best(best_rows), _best(bases)
    first = cells[0] if cells else {}
    levels = sorted({d for r in rows for d in r["per_difficulty"]} - {UNLABELED})

    lines = ["# Temperature grid", "",
             f"Model `{first.get('model')}`, benchmark `{first.get('benchmark')}`: "
             f"{len({(r['truncation'], r['t_train']) for r in rows})} trained model(s) "
             f"(T_train x training truncation), {len({r['t_eval'] for r in rows})} T_eval "
             f"value(s), "
             f"checkpoints: {first.get('checkpoints')}; {len(rows)} evaluations.", "",
             "## Best cell against the base model (Section 3.3)", ""]
    if best is not None:
        lines.append(f"- SSD: pass@1 {percent(best['pass@1'])} at T_train {best['t_train']:g}, "
                     f"truncation {best['truncation']}, {best['checkpoint']}, "
                     f"T_eval {best['t_eval']:g} (T_eff {best['t_eff']:.3g}).")
    if base_best is not None:
        lines.append(f"- Base model, best decode-only setting in the grid: pass@1 "
                     f"{percent(base_best['pass@1'])} at T_eval {base_best['t_eval']:g} "
                     f"({base_best['truncation']} truncation).")
    if best is not None and base_best is not None:
        lines.append(f"- Change: {100 * (best['pass@1'] - base_best['pass@1']):+.1f} points.")
    lines += ["", "## pass@1 against T_eff (best checkpoint per cell)", "",
              f"![pass@1 against T_eff]({TEFF_PNG})", "",
              table(["truncation", "points", "R²", "shape", "peak T_eff", "peak pass@1"],
                    [[f["group"], f["n"], _num(f["r_squared"]), f["shape"],
                      _num(f["peak_t_eff"]), _num(f["peak_value"])] for f in fit_table]), ""]
    for truncation in sorted({r["truncation"] for r in best_rows}):
        lines += [f"![pass@1 over T_train x T_eval, {truncation}]"
                  f"({heatmap_name(truncation)})", ""]
    header = ["T_train", "truncation", "checkpoint", "T_eval", "T_eff", "pass@1", "pass@5",
              *[f"pass@1/{d}" for d in levels]]
    lines += ["## Every evaluation", "", table(header, [
        [f"{r['t_train']:g}", r["truncation"], r["checkpoint"], f"{r['t_eval']:g}",
         f"{r['t_eff']:.3g}", percent(r["pass@1"]), percent(r["pass@5"]),
         *[percent(r["per_difficulty"].get(d, math.nan)) for d in levels]] for r in rows])]
    trained = training_set_rows(cells)
    if trained:
        lines += ["", "## Training sets", "", table(
            ["T_train", "truncation", "samples", "ended by the model", "cut, trained open",
             "tokens"],
            [[f"{t['t_train']:g}", t["truncation"], t.get("samples"), t.get("ended"),
              t.get("open"), t.get("tokens")] for t in trained])]
    if bases:
        lines += ["", "## Base model (decode only)", "", table(
            ["T_eval", "truncation", "pass@1", "pass@5"],
            [[f"{b['t_eval']:g}", b["truncation"], percent(b["pass@1"]), percent(b["pass@5"])]
             for b in bases])]
    summary = {"rows": rows, "best_per_cell": best_rows, "base": bases, "fits": fit_table,
               "best": best, "base_best": base_best, "training_sets": trained}
    return "\n".join(lines) + "\n", summary


def heatmap_name(truncation: str) -> str:
    return f"heatmap_{truncation}.png"


def plot_heatmap(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """pass@1 (best checkpoint) over T_train (rows) x T_eval (columns), each cell annotated."""
    plt = pyplot()
    import numpy as np

    t_trains = sorted({r["t_train"] for r in rows})
    t_evals = sorted({r["t_eval"] for r in rows})
    grid = np.full((len(t_trains), len(t_evals)), np.nan)
    for r in rows:
        grid[t_trains.index(r["t_train"]), t_evals.index(r["t_eval"])] = r["pass@1"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(t_evals), 1.2 + 0.7 * len(t_trains)),
                           constrained_layout=True)
    image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    for i in range(len(t_trains)):
        for j in range(len(t_evals)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="white",
                        fontsize=8)
    ax.set_xticks(range(len(t_evals)), [f"{t:g}" for t in t_evals])
    ax.set_yticks(range(len(t_trains)), [f"{t:g}" for t in t_trains])
    ax.set_xlabel("T_eval")
    ax.set_ylabel("T_train")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="pass@1")
    return save_figure(fig, path)


def write_grid_report(sweep_dir: Path, config: DictConfig | None = None) -> Path | None:
    """grid.md, grid.json, teff.png and the heat maps in ``sweep_dir``; W&B when ``config``
    has a logger. None when no job has finished."""
    from ssd.records import write_json_atomic
    from ssd.tracking import group_of, log_wandb

    cells = read_cells(sweep_dir)
    if not cells:
        print(f"pipeline report: no finished cell in {sweep_dir}")
        return None
    markdown, summary = build_grid_report(cells)
    best_rows = summary["best_per_cell"]
    base_best = summary["base_best"]
    records = teff_records(best_rows)
    if records:
        plot_teff(records, sweep_dir / TEFF_PNG,
                  baseline=base_best["pass@1"] if base_best else None)
    for truncation in sorted({r["truncation"] for r in best_rows}):
        plot_heatmap([r for r in best_rows if r["truncation"] == truncation],
                     sweep_dir / heatmap_name(truncation),
                     f"pass@1, training truncation {truncation}")
    write_json_atomic(sweep_dir / GRID_JSON, summary)
    (sweep_dir / GRID_MD).write_text(markdown)
    if config is not None and config.get("logger") is not None:
        columns = ["t_train", "truncation", "checkpoint", "step", "t_eval", "t_eff", "pass@1",
                   "pass@5"]
        best = summary["best"]
        metrics = {"grid/evaluations": float(len(summary["rows"]))}
        if best is not None:
            metrics["grid/best_pass@1"] = best["pass@1"]
        if base_best is not None:
            metrics["grid/base_best_pass@1"] = base_best["pass@1"]
        group = group_of(sweep_dir)
        log_wandb(config, sweep_dir, stage="grid", run_id=f"grid-{group}", metrics=metrics,
                  tables={"grid/table": (columns, [[r[c] for c in columns]
                                                   for r in summary["rows"]])},
                  name=f"grid {group}", group=group)
    print(f"pipeline report: {len(summary['rows'])} evaluations -> {sweep_dir / GRID_MD}")
    return sweep_dir / GRID_MD


class GridReport(Callback):
    """Hydra callback: the grid report once every job of the multirun has returned."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        sweep_dir = Path(str(config.hydra.sweep.dir))
        # Without the hydra node: its ${now:} / ${hydra:} values only resolve inside a job.
        write_grid_report(sweep_dir, OmegaConf.masked_copy(
            config, [key for key in config if key != "hydra"]))
