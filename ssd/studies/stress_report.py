"""The ``stress`` study's report: Section 4.4 / Appendix C.5.

* What the training samples look like (the generate run's diagnostics: the share with an
  extractable code block, that parses, cut at max_tokens, mixed-script; one representative).
* A checkpoint x T_eval heat map of pass@1, and how many configurations beat the base model at
  Table 4's decoding (the paper: 62 of 100 above 42.4%).
* The best configuration per difficulty, pass@1 and pass@5, against the base with paired
  intervals (Figure 15c), and its ridge: the configurations within ``study.ridge_pp`` points of
  it, and whether they touch it (a contiguous region, not one lucky cell).

Written: ``report.md``, ``stress.json``, ``heatmap.png``; W&B table ``study/stress`` with
``logger=wandb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.bootstrap import compare, comparison_note, comparison_table
from ssd.config import ConfigError, is_number, require, stats_options
from ssd.pipeline.report import diagnostics_rows, representative_lines
from ssd.plotting import pyplot, save_figure
from ssd.records import write_json_atomic
from ssd.studies.paper_numbers import PAPER_STRESS
from ssd.studies.results import EvalRun, generate_record, label_values, one_run, percent, runs_of
from ssd.studies.spec import StageSpec
from ssd.tables import markdown_table
from ssd.tracking import log_wandb

REPORT_FILE, JSON_FILE, HEATMAP = "report.md", "stress.json", "heatmap.png"


def check(cfg: DictConfig, specs: Sequence[StageSpec]) -> None:
    require(cfg, "study.ridge_pp", lambda v: is_number(v) and v >= 0, ">= 0 (points of pass@1)")
    roles = {s.role for s in specs}
    if not {"ssd", "base"} <= roles or not any(s.script == "generate" for s in specs):
        raise ConfigError("study.stages: the stress report needs a generate stage, an ssd "
                          "evaluation (checkpoints x T_eval sweep) and a base evaluation")


# -- the grid (pure) ----------------------------------------------------------------------------
def grid_cells(runs: Sequence[EvalRun]) -> list[dict[str, Any]]:
    """One cell per (checkpoint step, T_eval): pass@1, pass@5 and the run. The final export and
    the last step's are the same weights (the same evaluation): one cell."""
    cells: dict[tuple[int | None, float], dict[str, Any]] = {}
    for r in runs:
        cells.setdefault((r.step, r.t), {"step": r.step, "checkpoint": r.checkpoint, "t": r.t,
                                         "pass@1": r.value(1), "pass@5": r.value(5), "run": r})
    return list(cells.values())


def ridge(cells: Sequence[Mapping[str, Any]], best: Mapping[str, Any], within: float
          ) -> list[Mapping[str, Any]]:
    """The cells within ``within`` (a share) of the best pass@1 that connect to the best cell
    through such cells (grid neighbours: the next checkpoint or the next T_eval)."""
    steps = sorted({c["step"] for c in cells})
    temps = sorted({c["t"] for c in cells})
    at = {(steps.index(c["step"]), temps.index(c["t"])): c for c in cells}
    near = {key for key, c in at.items()
            if c["pass@1"] is not None and c["pass@1"] >= best["pass@1"] - within}
    start = (steps.index(best["step"]), temps.index(best["t"]))
    seen, todo = {start}, [start]
    while todo:
        i, j = todo.pop()
        for neighbour in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if neighbour in near and neighbour not in seen:
                seen.add(neighbour)
                todo.append(neighbour)
    return [at[key] for key in sorted(seen)]


def heatmap_table(cells: Sequence[Mapping[str, Any]], base: float | None
                  ) -> tuple[list[str], list[list[str]]]:
    temps = sorted({c["t"] for c in cells})
    steps = sorted({c["step"] for c in cells})
    by = {(c["step"], c["t"]): c for c in cells}

    def cell(step: int, t: float) -> str:
        value = by.get((step, t), {}).get("pass@1")
        mark = "" if value is None or base is None or value <= base else " ▲"
        return percent(value) + mark

    return (["step \\ T_eval", *(f"{t:g}" for t in temps)],
            [[str(s), *(cell(s, t) for t in temps)] for s in steps])


def plot_heatmap(cells: Sequence[Mapping[str, Any]], base: float | None, path: Path,
                 title: str) -> Path:
    import numpy as np

    plt = pyplot()
    temps = sorted({c["t"] for c in cells})
    steps = sorted({c["step"] for c in cells})
    grid = np.full((len(steps), len(temps)), np.nan)
    for c in cells:
        if c["pass@1"] is not None:
            grid[steps.index(c["step"]), temps.index(c["t"])] = 100 * c["pass@1"]
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(temps), 1 + 0.4 * len(steps)))
    image = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
    ax.set_xticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax.set_yticks(range(len(steps)), [str(s) for s in steps])
    ax.set_xlabel("T_eval")
    ax.set_ylabel("checkpoint step")
    if base is not None:
        for i in range(len(steps)):
            for j in range(len(temps)):
                if grid[i, j] > 100 * base:
                    ax.text(j, i, "▲", ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(image, ax=ax, label="pass@1 (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def diagnostics_lines(found: Mapping[str, Any] | None) -> list[str]:
    """The training samples as the demo's report shows them, and the paper's share beside."""
    lines = [markdown_table(["of the training samples", "%"], diagnostics_rows(found)), ""]
    if found and found.get("code_block") is not None:
        lines += [f"Without an extractable code block: {percent(1 - found['code_block'])}% "
                  f"(the paper: ~{100 * PAPER_STRESS['no_code_block']:.0f}%).", ""]
    return lines + representative_lines(found)


# -- the report ---------------------------------------------------------------------------------
def write(cfg: DictConfig, payload: Mapping[str, Any], out: Path) -> Path:
    stats = stats_options(cfg)
    within = float(cfg.study.ridge_pp) / 100
    who = payload.get("experiment") or payload["model"]
    generated = generate_record(payload) or {}
    lines = [f"# The stress test (Section 4.4, Appendix C.5): {who}", "",
             "## The training samples", "", *diagnostics_lines(generated.get("diagnostics")), ""]
    sections = []
    for benchmark in label_values(payload, "benchmark"):
        base = one_run(payload, "base", benchmark=benchmark)
        cells = grid_cells(runs_of(payload, "ssd", benchmark=benchmark))
        measured = [c for c in cells if c["pass@1"] is not None]
        if base is None or not measured:
            lines += [f"## {benchmark}", "", "missing: the base or the SSD evaluations", ""]
            continue
        base_value = base.value(1)
        above = [c for c in measured if base_value is not None and c["pass@1"] > base_value]
        best = max(measured, key=lambda c: (c["pass@1"], c["step"] or 0))
        neighbours = ridge(measured, best, within)
        comparison = compare(base.results, best["run"].results, ks=(1, 5), label_a="base",
                             label_b="+SSD", **stats)
        header, body = comparison_table(comparison)
        figure = plot_heatmap(measured, base_value, out / f"heatmap_{benchmark}.png",
                              f"{who} on {benchmark}: pass@1 (▲ above the base)")
        h_header, h_rows = heatmap_table(measured, base_value)
        lines += [f"## {benchmark}", "",
                  f"**{len(above)} of {len(measured)}** (checkpoint, T_eval) configurations "
                  f"beat the base model's pass@1 {percent(base_value)}% (Table 4's decoding, "
                  f"T {base.t:g}; the paper: {PAPER_STRESS['above_base']} of "
                  f"{PAPER_STRESS['configurations']} above {PAPER_STRESS['base_pass@1']}%).", "",
                  f"![heat map]({figure.name})", "", markdown_table(h_header, h_rows), "",
                  f"### The best configuration: step {best['step']}, T_eval {best['t']:g}", "",
                  f"pass@1 {percent(best['pass@1'])}%, pass@5 {percent(best['pass@5'])}% (the "
                  f"paper: {PAPER_STRESS['best_pass@1']}% / {PAPER_STRESS['best_pass@5']}% at "
                  f"step {PAPER_STRESS['best_step']}, T_eval {PAPER_STRESS['best_t_eval']}). "
                  "Per difficulty against the base (Figure 15c):", "",
                  markdown_table(header, body), "", comparison_note(comparison), "",
                  f"Its ridge (connected configurations within {cfg.study.ridge_pp:g} points): "
                  + ", ".join(f"step {c['step']} T {c['t']:g} ({percent(c['pass@1'])}%)"
                              for c in neighbours), ""]
        sections.append({"benchmark": benchmark, "base_run": str(base.run_dir),
                         "base_pass@1": base_value, "base_pass@5": base.value(5),
                         "configurations": len(measured), "above_base": len(above),
                         "best": {k: v for k, v in best.items() if k != "run"}
                         | {"run_dir": str(best["run"].run_dir)},
                         "ridge": [{"step": c["step"], "t": c["t"], "pass@1": c["pass@1"]}
                                   for c in neighbours],
                         "comparison": comparison.to_dict(),
                         "cells": [{k: v for k, v in c.items() if k != "run"} for c in measured],
                         "heatmap": {"header": h_header, "rows": h_rows}})
    (out / REPORT_FILE).write_text("\n".join(lines))
    tables = {f"study/stress/{s['benchmark']}": (s["heatmap"]["header"], s["heatmap"]["rows"])
              for s in sections}
    scalars = {f"study/stress/{s['benchmark']}/above_base": float(s["above_base"])
               for s in sections}
    wandb = log_wandb(cfg, out, stage="study", run_id=f"study-stress-{out.name}",
                      metrics=scalars, tables=tables)
    write_json_atomic(out / JSON_FILE, {"diagnostics": generated.get("diagnostics"),
                                        "benchmarks": sections, "paper": PAPER_STRESS,
                                        "wandb": wandb})
    return out / REPORT_FILE
