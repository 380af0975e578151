"""The grid report: every cell's pass@k, the T_eff fits, heat maps and the Section 3.3 comparison.

``GridReport`` is the Hydra callback (``hydra.callbacks`` in conf/pipeline.yaml) that runs once a
pipeline.py multirun has ended; ``write_grid_report(sweep_dir)`` does the work from the jobs'
``cell.json`` files (and the results.jsonl of the evaluations they name, for the bootstrap
intervals and the paired base-vs-SSD comparisons of ``ssd.bootstrap``), so it also runs after a
SLURM array (or by hand on a partial sweep). The report states the problem set (name, definition,
count, id digest) and grader profile of its evaluations (``ssd.stamps``; from the
evaluations' metrics.json where a cell from before they were recorded lacks them), and warns
where a base-vs-SSD comparison is between two problem sets or two graders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ssd import stamps
from ssd.analysis import ResultRecord, TeffPanel, fit_groups, plot_teff_panels, summary_rows
from ssd.bootstrap import (
    Comparison,
    compare,
    comparison_note,
    comparison_table,
    passk_intervals,
    problem_results,
)
from ssd.overrides import GRID, TABLE4
from ssd.passk import UNLABELED, ProblemResult
from ssd.pipeline.grid import CELL_FILE
from ssd.pipeline.report import percent
from ssd.plotting import pyplot, save_figure
from ssd.tables import markdown_table

GRID_MD = "grid.md"
GRID_JSON = "grid.json"
TEFF_PNG = "teff.png"
KS = (1, 5)  # the pass@k of the tables and figures (the paper's panels)
# The generate runs' diagnostics shown per training set: key -> column.
DIAGNOSTICS_COLUMNS = {"code_block": "code block", "parses": "parses",
                       "mixed_script": "mixed script"}
# Per-problem outcomes of the grid's evaluations, by evaluate run directory.
Results = Mapping[str, Sequence[ProblemResult]]


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


def _by_difficulty(block: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """pass@1 and pass@5 per difficulty of an evaluation (NaN where a run did not report it)."""
    return {d: {f"pass@{k}": _pass(b, k) for k in KS}
            for d, b in (block.get("per_difficulty") or {}).items()}


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
                "eval_truncation": cell.get("eval_truncation"),
                "pass@1": _pass(e["overall"], 1), "pass@5": _pass(e["overall"], 5),
                "per_difficulty": _by_difficulty(e),
                "run_dir": e.get("run_dir"), **stamps.stamp(e),
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
    """The base model's decode-only results, one per (reference, T, truncation): ``reference``
    is the cell's ``eval.base_decoding``, Table 4's decoding (truncation ``baseline``) or the
    grid's (the cell's T_eval and evaluation truncation; a cell from before the choice)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in cells:
        base = cell.get("base")
        if not base:
            continue
        reference = cell.get("base_decoding", GRID)
        t_eval = base.get("t_eval") or cell["t_eval"]
        truncation = "baseline" if reference == TABLE4 else cell["eval_truncation"]
        rows[(reference, t_eval, truncation)] = {
            "reference": reference, "t_eval": t_eval, "truncation": truncation,
            "top_k": base.get("top_k"), "top_p": base.get("top_p"),
            "pass@1": _pass(base["overall"], 1), "pass@5": _pass(base["overall"], 5),
            "per_difficulty": _by_difficulty(base), "run_dir": base.get("run_dir"),
            **stamps.stamp(base)}
    return [rows[k] for k in sorted(rows)]


def reference_line(bases: Sequence[dict[str, Any]]) -> str:
    """Which decoding the base model was evaluated at, as the report states it."""
    if not bases:
        return "No base model was evaluated (eval.base=false)."
    described = []
    for b in bases:
        if b["reference"] == TABLE4:
            described.append(
                f"Table 4's decoding (`decoding=baseline truncation=baseline`: T {b['t_eval']:g}, "
                f"top-k {b['top_k']}, top-p {b['top_p']}), the model's recommended setting, as "
                "the paper compares (eval.base_decoding=table4)")
    if any(b["reference"] == GRID for b in bases):
        described.append("the grid's own decoding: the base model at each T_eval with the "
                         "evaluation truncation (eval.base_decoding=grid)")
    return "Base model reference: " + "; ".join(described) + "."


def _best(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if not math.isnan(r["pass@1"])]
    return max(scored, key=lambda r: r["pass@1"], default=None)


def _num(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:g}"


def teff_records(best_rows: Sequence[dict[str, Any]], k: int = 1) -> list[ResultRecord]:
    """The best-checkpoint cells' pass@k as T_eff points, grouped by training truncation
    (Figure 3a; its pass@5 panel with k=5)."""
    return [ResultRecord(r["t_train"], r["t_eval"], r[f"pass@{k}"], r["truncation"])
            for r in best_rows if not math.isnan(r[f"pass@{k}"])]


def training_set_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each (T_train, truncation) trained on: samples, ended by the model, cut at
    max_tokens and trained open (train.py's record of its training set), and the generate run's
    diagnostics of the sampled text (``diagnostics``: None for a run from before them), once
    each."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in cells:
        found = cell.get("training_set")
        if found:
            rows[(cell["truncation"], cell["t_train"])] = {
                "t_train": cell["t_train"], "truncation": cell["truncation"], **found,
                "diagnostics": cell.get("diagnostics")}
    return [rows[key] for key in sorted(rows)]


def fill_stamps(cells: Sequence[dict[str, Any]]) -> None:
    """Give each evaluation of ``cells`` that lacks its problem set or grader (a cell.json from
    before the grid recorded them) those of its run directory's metrics.json, where found."""
    for cell in cells:
        for block in [*cell.get("evaluations", []), cell.get("base")]:
            if not block or (block.get("problem_set") and block.get("grader")):
                continue
            path = Path(block.get("run_dir") or "") / "metrics.json"
            if not block.get("run_dir") or not path.is_file():
                continue
            try:
                found = stamps.stamp(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
            for key, value in found.items():
                if not block.get(key):
                    block[key] = value


def _row_label(row: dict[str, Any]) -> str:
    if "checkpoint" in row:
        return (f"SSD (T_train {row['t_train']:g}, {row['truncation']}, {row['checkpoint']}, "
                f"T_eval {row['t_eval']:g})")
    return f"base (T_eval {row['t_eval']:g}, {row['truncation']})"


def stamp_groups(rows: Sequence[dict[str, Any]], bases: Sequence[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """The distinct problem sets and graders of the grid's evaluations (``stamps.groups``)."""
    return stamps.groups((_row_label(r), r) for r in [*rows, *bases])


def read_results(rows: Sequence[dict[str, Any]]) -> dict[str, list[ProblemResult]]:
    """The per-problem outcomes of every row's evaluation whose results.jsonl is there."""
    from ssd.records import read_records

    found = {}
    for row in rows:
        run_dir = row.get("run_dir")
        if run_dir and run_dir not in found and (Path(run_dir) / "results.jsonl").is_file():
            found[run_dir] = problem_results(read_records(Path(run_dir) / "results.jsonl"))
    return found


def add_intervals(rows: Sequence[dict[str, Any]], results: Results, stats: dict[str, Any]
                  ) -> None:
    """Each row's overall pass@1 and pass@5 intervals (``pass@k_ci``: [low, high]), where its
    results are known."""
    for row in rows:
        found = results.get(row.get("run_dir") or "")
        if found:
            overall = passk_intervals(found, ks=(1, 5), **stats)["overall"]
            for k, interval in overall.items():
                row[f"pass@{k}_ci"] = [interval.low, interval.high]


def base_comparison(ssd: dict[str, Any] | None, base: dict[str, Any] | None, results: Results,
                    stats: dict[str, Any]) -> Comparison | None:
    """The paired bootstrap of an SSD row against a base row; None without both results."""
    if ssd is None or base is None:
        return None
    a, b = results.get(base.get("run_dir") or ""), results.get(ssd.get("run_dir") or "")
    if not a or not b:
        return None
    return compare(a, b, label_a="base", label_b="SSD", **stats)


def reference_base(row: dict[str, Any], bases: Sequence[dict[str, Any]]
                   ) -> dict[str, Any] | None:
    """The base row an SSD row is compared with: the Table 4 one when the grid has it, else the
    one at the row's T_eval and evaluation truncation (eval.base_decoding=grid)."""
    table4 = [b for b in bases if b["reference"] == TABLE4]
    if table4:
        return table4[0]
    return next((b for b in bases if (b["t_eval"], b["truncation"])
                 == (row["t_eval"], row.get("eval_truncation"))), None)


def reference_comparisons(best_rows: Sequence[dict[str, Any]], bases: Sequence[dict[str, Any]],
                          results: Results, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Each trained model's best checkpoint against its reference base row
    (``reference_base``): row, comparison and how their problem sets or graders differ."""
    found = []
    for row in best_rows:
        base = reference_base(row, bases)
        comparison = base_comparison(row, base, results, stats)
        if comparison is not None and base is not None:
            found.append({"row": row, "comparison": comparison,
                          "stamp_differences": stamps.differences(base, row)})
    return found


def _difference(comparison: Comparison, k: int) -> str:
    d = comparison.scopes["overall"].get(k)
    if d is None:
        return "–"
    e = d.difference
    return f"{100 * e.estimate:+.1f} [{100 * e.low:+.1f}, {100 * e.high:+.1f}] (p {d.p_value:.2g})"


def _interval_cell(row: dict[str, Any], k: int) -> str:
    ci = row.get(f"pass@{k}_ci")
    return "–" if ci is None else f"[{percent(ci[0])}, {percent(ci[1])}]"


def build_grid_report(cells: Sequence[dict[str, Any]], results: Results | None = None,
                      stats: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The markdown and the JSON summary of a grid's cells. ``results`` (per evaluate run
    directory, ``read_results``) adds bootstrap intervals and the paired comparisons with the
    base model, made with ``stats`` (``ssd.config.stats_options``; default: the bootstrap's)."""
    results = results or {}
    stats = stats or {}
    rows = grid_rows(cells)
    best_rows = best_over_checkpoints(rows)
    bases = base_rows(cells)
    found = stamp_groups(rows, bases)
    shared = len(found) == 1
    stamp_header = [] if shared else ["problem set", "ids sha256", "grader"]

    def stamp_cells(row: dict[str, Any]) -> list[str]:
        if shared:
            return []
        name, _, _, digest, grader = stamps.cells(row)
        return [name, digest, grader]

    add_intervals([*rows, *bases], results, stats)
    fit_tables = {k: summary_rows(fit_groups(teff_records(best_rows, k))) for k in KS}
    best, base_best = _best(best_rows), _best(bases)
    first = cells[0] if cells else {}
    levels = sorted({d for r in [*rows, *bases] for d in r["per_difficulty"]} - {UNLABELED})
    difficulty_header = [f"pass@{k}/{d}" for k in KS for d in levels]

    def difficulty_cells(row: dict[str, Any]) -> list[str]:
        return [percent(row["per_difficulty"].get(d, {}).get(f"pass@{k}", math.nan))
                for k in KS for d in levels]

    lines = ["# Temperature grid", "",
             f"Model `{first.get('model')}`, benchmark `{first.get('benchmark')}`: "
             f"{len({(r['truncation'], r['t_train']) for r in rows})} trained model(s) "
             f"(T_train x training truncation), {len({r['t_eval'] for r in rows})} T_eval "
             f"value(s), "
             f"checkpoints: {first.get('checkpoints')}; {len(rows)} evaluations.", "",
             *stamps.group_lines(found), "", reference_line(bases), "",
             "## Best cell against the base model (Section 3.3)", ""]
    if best is not None:
        lines.append(f"- SSD: pass@1 {percent(best['pass@1'])} at T_train {best['t_train']:g}, "
                     f"truncation {best['truncation']}, {best['checkpoint']}, "
                     f"T_eval {best['t_eval']:g} (T_eff {best['t_eff']:.3g}).")
    if base_best is not None:
        lines.append(f"- Base model, best decode-only setting in the grid: pass@1 "
                     f"{percent(base_best['pass@1'])} at T {base_best['t_eval']:g} "
                     f"({base_best['truncation']} truncation).")
    headline_differences = []
    if best is not None and base_best is not None:
        lines.append(f"- Change: {100 * (best['pass@1'] - base_best['pass@1']):+.1f} points.")
        headline_differences = stamps.differences(base_best, best)
        if headline_differences:
            lines += ["", stamps.warning(headline_differences)]
    headline = base_comparison(best, base_best, results, stats)
    if headline is not None:
        header, table_rows = comparison_table(headline)
        lines += ["", markdown_table(header, table_rows), "",
                  comparison_note(headline) + " Both settings were picked as the grid's best "
                  "after looking at every cell, so the interval is optimistic about the gap.",
                  ""]
    with_base = reference_comparisons(best_rows, bases, results, stats)
    if with_base:
        at = ("Table 4's decoding" if any(b["reference"] == TABLE4 for b in bases)
              else "the same T_eval")
        lines += ["", f"## Each trained model against the base model at {at}", "",
                  "Best checkpoint per cell; SSD - base in points, paired bootstrap over "
                  "problems (95% interval, p).", "",
                  markdown_table(["T_train", "truncation", "checkpoint", "T_eval", "pass@1 change",
                         "pass@5 change"],
                        [[f"{c['row']['t_train']:g}", c["row"]["truncation"],
                          c["row"]["checkpoint"], f"{c['row']['t_eval']:g}",
                          _difference(c["comparison"], 1), _difference(c["comparison"], 5)]
                         for c in with_base])]
        differing = [c for c in with_base if c["stamp_differences"]]
        if differing:
            lines += ["", *[f"- T_train {c['row']['t_train']:g}, {c['row']['truncation']}, "
                            f"T_eval {c['row']['t_eval']:g}: "
                            f"{stamps.warning(c['stamp_differences'])}" for c in differing]]
    lines += ["", "## pass@1 and pass@5 against T_eff (best checkpoint per cell)", "",
              "The checkpoint with the best pass@1 per cell, in both panels; a quadratic fit "
              "per training truncation.", "",
              f"![pass@1 and pass@5 against T_eff]({TEFF_PNG})", "",
              markdown_table(
                  ["metric", "truncation", "points", "R²", "shape", "peak T_eff", "peak"],
                  [[f"pass@{k}", f["group"], f["n"], _num(f["r_squared"]), f["shape"],
                    _num(f["peak_t_eff"]), _num(f["peak_value"])]
                   for k, fit_table in fit_tables.items() for f in fit_table]), ""]
    for truncation in sorted({r["truncation"] for r in best_rows}):
        lines += [f"![pass@1 and pass@5 over T_train x T_eval, {truncation}]"
                  f"({heatmap_name(truncation)})", ""]
    header = ["T_train", "truncation", "checkpoint", "T_eval", "T_eff", "pass@1", "pass@5",
              *difficulty_header, "pass@1 95% CI", "pass@5 95% CI", *stamp_header]
    lines += ["## Every evaluation", "", markdown_table(header, [
        [f"{r['t_train']:g}", r["truncation"], r["checkpoint"], f"{r['t_eval']:g}",
         f"{r['t_eff']:.3g}", percent(r["pass@1"]), percent(r["pass@5"]),
         *difficulty_cells(r), _interval_cell(r, 1), _interval_cell(r, 5), *stamp_cells(r)]
        for r in rows])]
    trained = training_set_rows(cells)
    if trained:
        lines += ["", "## Training sets", "", markdown_table(
            ["T_train", "truncation", "samples", "ended by the model", "cut, trained open",
             "tokens", *DIAGNOSTICS_COLUMNS.values()],
            [[f"{t['t_train']:g}", t["truncation"], t.get("samples"), t.get("ended"),
              t.get("open"), t.get("tokens"),
              *[percent((t["diagnostics"] or {}).get(key)) for key in DIAGNOSTICS_COLUMNS]]
             for t in trained]),
            "", "Of the samples generated (before the filter): with an extractable code block, "
            "whose block parses as Python, whose letters mix scripts (`ssd/generation/"
            "diagnostics.py`); – for a generate run from before these were recorded."]
    if bases:
        lines += ["", "## Base model (decode only)", "", markdown_table(
            ["reference", "T", "truncation", "pass@1", "pass@5", *difficulty_header,
             "pass@1 95% CI", "pass@5 95% CI", *stamp_header],
            [[b["reference"], f"{b['t_eval']:g}", b["truncation"], percent(b["pass@1"]),
              percent(b["pass@5"]), *difficulty_cells(b), _interval_cell(b, 1),
              _interval_cell(b, 5), *stamp_cells(b)] for b in bases])]
    summary = {"rows": rows, "best_per_cell": best_rows, "base": bases,
               "fits": fit_tables[1], "fits_pass@5": fit_tables[5],
               "best": best, "base_best": base_best, "training_sets": trained,
               "stamps": found, "best_vs_base_stamp_differences": headline_differences,
               "comparison": headline.to_dict() if headline is not None else None,
               "comparison_table": dict(zip(("columns", "rows"), comparison_table(headline),
                                            strict=True)) if headline is not None else None,
               "comparisons_with_base": [
                   {key: c["row"][key] for key in ("t_train", "truncation", "checkpoint",
                                                   "t_eval")}
                   | {"comparison": c["comparison"].to_dict(),
                      "stamp_differences": c["stamp_differences"]} for c in with_base]}
    return "\n".join(lines) + "\n", summary


def heatmap_name(truncation: str) -> str:
    return f"heatmap_{truncation}.png"


def plot_heatmap(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """pass@1 and pass@5 (the best checkpoint by pass@1) over T_train (rows) x T_eval (columns),
    one panel each, every cell annotated."""
    plt = pyplot()
    import numpy as np

    t_trains = sorted({r["t_train"] for r in rows})
    t_evals = sorted({r["t_eval"] for r in rows})
    width, height = 1.2 + 0.9 * len(t_evals), 1.2 + 0.7 * len(t_trains)
    fig, axes = plt.subplots(1, len(KS), figsize=(len(KS) * width, height),
                             constrained_layout=True)
    for ax, k in zip(axes, KS, strict=True):
        grid = np.full((len(t_trains), len(t_evals)), np.nan)
        for r in rows:
            grid[t_trains.index(r["t_train"]), t_evals.index(r["t_eval"])] = r[f"pass@{k}"]
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
        ax.set_title(f"pass@{k}")
        fig.colorbar(image, ax=ax, label=f"pass@{k}")
    fig.suptitle(title)
    return save_figure(fig, path)


def write_grid_report(sweep_dir: Path, config: DictConfig | None = None) -> Path | None:
    """grid.md, grid.json, teff.png and the heat maps in ``sweep_dir``; W&B when ``config``
    has a logger. None when no job has finished."""
    from ssd.config import stats_options
    from ssd.records import write_json_atomic
    from ssd.tracking import group_of, log_wandb

    cells = read_cells(sweep_dir)
    if not cells:
        print(f"pipeline report: no finished cell in {sweep_dir}")
        return None
    fill_stamps(cells)
    stats = (stats_options(config) if config is not None and config.get("stats") is not None
             else {})
    markdown, summary = build_grid_report(cells, read_results([*grid_rows(cells),
                                                               *base_rows(cells)]), stats)
    best_rows = summary["best_per_cell"]
    base_best = summary["base_best"]
    if teff_records(best_rows):
        plot_teff_panels([TeffPanel(f"pass@{k}", teff_records(best_rows, k),
                                    base_best[f"pass@{k}"] if base_best else None)
                          for k in KS], sweep_dir / TEFF_PNG)
    for truncation in sorted({r["truncation"] for r in best_rows}):
        plot_heatmap([r for r in best_rows if r["truncation"] == truncation],
                     sweep_dir / heatmap_name(truncation),
                     f"training truncation {truncation} (best checkpoint by pass@1)")
    write_json_atomic(sweep_dir / GRID_JSON, summary)
    (sweep_dir / GRID_MD).write_text(markdown)
    if config is not None and config.get("logger") is not None:
        columns = ["t_train", "truncation", "checkpoint", "step", "t_eval", "t_eff", "pass@1",
                   "pass@5"]
        best = summary["best"]
        metrics = {"grid/evaluations": float(len(summary["rows"]))}
        for k in KS:
            if best is not None:
                metrics[f"grid/best_pass@{k}"] = best[f"pass@{k}"]
            if base_best is not None:
                metrics[f"grid/base_best_pass@{k}"] = base_best[f"pass@{k}"]
        tables = {"grid/table": (columns, [[r[c] for c in columns] for r in summary["rows"]]),
                  # what the evaluations are about: problem set and grader, with how many
                  "grid/problem_sets": ([*stamps.COLUMNS, "evaluations"],
                                        [[*stamps.cells(g), len(g["evaluations"])]
                                         for g in summary["stamps"]])}
        if summary["comparison"] is not None:
            # The best cell against the base model's best: the difference, interval, p-value.
            for name, d in summary["comparison"]["scopes"]["overall"].items():
                prefix = f"grid/ssd_minus_base/{name}"
                metrics.update({prefix: d["difference"]["estimate"],
                                f"{prefix}/low": d["difference"]["low"],
                                f"{prefix}/high": d["difference"]["high"],
                                f"{prefix}/p": d["p_value"]})
            tables["grid/comparison"] = (summary["comparison_table"]["columns"],
                                         summary["comparison_table"]["rows"])
        group = group_of(sweep_dir)
        log_wandb(config, sweep_dir, stage="grid", run_id=f"grid-{group}", metrics=metrics,
                  tables=tables, name=f"grid {group}", group=group)
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
