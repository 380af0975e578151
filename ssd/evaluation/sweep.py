"""After a multirun of evaluate.py: one table and one plot of pass@k against T for the sweep.

Each job leaves a copy of its metrics.json in its Hydra job folder (``<sweep dir>/<job>/``), so the
summary needs nothing but the sweep directory, whichever launcher ran the jobs (the basic one in
this process, or submitit on other machines). ``SweepSummary`` is the Hydra callback
(``hydra.callbacks`` in conf/evaluate.yaml) that writes, into the sweep directory:

    summary.md         the problem set (name, definition, count, id digest) and grader profile
                       of the jobs (``ssd.stamps``); the table (markdown), one row per
                       job, sorted by the swept values and T, each pass@k with its bootstrap
                       interval; when the sweep holds several models, each one's paired
                       comparison with the first (``ssd.bootstrap``), with a warning where the
                       two jobs' problem sets or graders differ
    summary.json       the same rows, plus the best pass@1, the problem sets and graders
                       (``stamps``) and the comparisons
    pass_at_k_vs_T.png pass@k against T: one panel per k, overall and per difficulty, one curve
                       per combination of the other swept values (e.g. per model)

Table 4 / Figure 2 of the paper are this, for the base model at its recommended truncation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ssd import stamps
from ssd.bootstrap import (
    Interval,
    compare,
    comparison_note,
    comparison_table,
    passk_intervals,
    problem_results,
)
from ssd.config import stats_options
from ssd.passk import UNLABELED, ProblemResult
from ssd.plotting import pyplot, save_figure
from ssd.records import read_records
from ssd.tables import markdown_table

PLOT_NAME = "pass_at_k_vs_T.png"
# Overrides already shown as their own columns.
SHOWN_KEYS = {"decoding.T", "truncation.top_k", "truncation.top_p", "eval.n"}
# Overrides that choose the model: jobs that differ only in these are paired for a comparison.
MODEL_KEYS = {"model", "model.path", "model.name", "eval.completions"}
# Each row's problem set and grader (every row has them; they are columns of the table only
# when the jobs do not all share them; the text above the table states them in full).
STAMP_COLUMNS = ["problem set", "ids sha256", "grader"]


def _job_order(path: Path) -> tuple[Any, ...]:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts)


def read_job_metrics(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's metrics.json under ``sweep_dir``, in job order, with its job folder."""
    records = []
    for path in sorted(sweep_dir.rglob("metrics.json"),
                       key=lambda p: _job_order(p.relative_to(sweep_dir))):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            print(f"evaluate sweep: skipping {path} ({error})")
            continue
        record["job"] = str(path.parent.relative_to(sweep_dir))
        records.append(record)
    return records


def _override_values(record: dict[str, Any]) -> dict[str, str]:
    pairs = (o.split("=", 1) for o in record.get("overrides") or [] if "=" in o)
    return {key.lstrip("+~"): value for key, value in pairs}


def varying_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """Override keys whose value is not the same in every job (what the sweep swept)."""
    values = [_override_values(r) for r in records]
    keys = sorted({k for v in values for k in v})
    return [k for k in keys if len({v.get(k) for v in values}) > 1]


def difficulties(records: Sequence[dict[str, Any]]) -> list[str]:
    """Difficulty labels present (not "unlabeled", which would only repeat the overall value)."""
    names = {d for r in records for d in r.get("per_difficulty", {}) if d != UNLABELED}
    order = {"easy": 0, "medium": 1, "hard": 2}
    return sorted(names, key=lambda d: (order.get(d, 3), d))


def ci_column(k: int) -> str:
    return f"pass@{k} 95% CI"


def job_results(record: dict[str, Any]) -> list[ProblemResult] | None:
    """The job's per-problem (n, c), from its run directory's results.jsonl; None without one."""
    run_dir = record.get("run_dir")
    path = Path(run_dir) / "results.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return None
    return problem_results(read_records(path))


def model_label(record: dict[str, Any]) -> str:
    """Which model a job evaluated: its model path, or the completions file it scored."""
    if record.get("model"):
        return str(record["model"])
    return f"completions {record.get('eval', {}).get('completions')}"


def sweep_rows(records: Sequence[dict[str, Any]],
               intervals: Sequence[dict[int, Interval] | None] | None = None
               ) -> tuple[list[str], list[dict[str, Any]]]:
    """The table: its columns and one row per job, sorted by the other swept values, then T.
    ``intervals`` (per record, overall pass@k intervals by k) adds a CI column per k, unless no
    job has them (no results.jsonl found)."""
    if intervals is not None and all(found is None for found in intervals):
        intervals = None
    swept = [k for k in varying_keys(records) if k not in SHOWN_KEYS]
    ks = sorted({k for r in records for k in r.get("ks", [])})
    levels = difficulties(records)
    columns = ["job", *swept, "T", "top_k", "top_p", "n"]
    for k in ks:
        columns += [f"pass@{k}", *([ci_column(k)] if intervals is not None else [])]
    columns += [f"pass@{k}/{d}" for k in ks for d in levels]
    columns += ["problems", "samples", "engine_starts"]
    if len({json.dumps(stamps.stamp(r), sort_keys=True) for r in records}) > 1:
        columns += STAMP_COLUMNS
    rows = []
    for index, record in enumerate(records):
        overrides = _override_values(record)
        truncation = record.get("truncation") or {}
        row: dict[str, Any] = {"job": record["job"], **{k: overrides.get(k) for k in swept},
                               "T": record.get("t_eval"), "top_k": truncation.get("top_k"),
                               "top_p": truncation.get("top_p"), "n": record.get("n")}
        own = intervals[index] if intervals is not None else None
        for k in ks:
            row[f"pass@{k}"] = record.get(f"pass@{k}")
            if own is not None and k in own:
                row[ci_column(k)] = [own[k].low, own[k].high]
            for d in levels:
                row[f"pass@{k}/{d}"] = record.get("per_difficulty", {}).get(d, {}).get(
                    f"pass@{k}")
        row.update(problems=record.get("problems"), samples=record.get("samples"),
                   engine_starts=record.get("engine_starts"), run_dir=record.get("run_dir"))
        name, _, _, digest, grader = stamps.cells(record)
        row.update({"problem set": name, "ids sha256": digest, "grader": grader})
        rows.append(row)
    rows.sort(key=lambda r: ([str(r[k]) for k in swept],
                             r["T"] if r["T"] is not None else float("inf")))
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):  # an interval
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def records_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """Dict rows as a markdown table, values formatted by ``_cell``."""
    return markdown_table(columns, [[_cell(row.get(c)) for c in columns] for row in rows]) + "\n"


def best_row(rows: Sequence[dict[str, Any]], metric: str = "pass@1") -> dict[str, Any] | None:
    scored = [r for r in rows if r.get(metric) is not None]
    return max(scored, key=lambda r: r[metric]) if scored else None


def plot_sweep(records: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], path: Path
               ) -> bool:
    """pass@k against T, one panel per k; False (no file) when no job has a temperature."""
    plt = pyplot()

    rows = [r for r in rows if r["T"] is not None]
    ks = sorted({k for r in records for k in r.get("ks", [])})
    if not rows or not ks:
        return False
    swept = [k for k in varying_keys(records) if k not in SHOWN_KEYS]
    levels = difficulties(records)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = ", ".join(f"{k}={row[k]}" for k in swept)
        groups.setdefault(label, []).append(row)
    fig, axes = plt.subplots(1, len(ks), figsize=(5.5 * len(ks), 4.2), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        for g, (label, members) in enumerate(groups.items()):
            members = sorted(members, key=lambda r: r["T"])
            color = f"C{g % 10}"
            xs = [r["T"] for r in members]
            ax.plot(xs, [r[f"pass@{k}"] for r in members], "o-", color=color,
                    label=f"{label + ': ' if label else ''}all")
            for style, d in zip(("--", ":", "-."), levels, strict=False):
                ax.plot(xs, [r[f"pass@{k}/{d}"] for r in members], style, color=color,
                        alpha=0.7, label=f"{label + ': ' if label else ''}{d}")
        ax.set_xlabel("evaluation temperature T")
        ax.set_ylabel(f"pass@{k}")
        ax.set_title(f"pass@{k} against T")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, min(1.02, max(0.05, ax.get_ylim()[1])))  # rates: 0 at the bottom
        ax.legend(fontsize=7)
    models = {r.get("model_name") or r.get("model") for r in records}
    benchmark = records[0].get("eval", {}).get("name")
    fig.suptitle(f"{models.pop()} on {benchmark}" if len(models) == 1 else str(benchmark),
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def paired_jobs(records: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(reference, other) record positions to compare: the sweep's first model (in job order) is
    the reference; each job of another model is paired with the reference's job whose other
    override values are the same (e.g. the same T). Empty when the sweep holds one model."""
    models = list(dict.fromkeys(model_label(r) for r in records))
    if len(models) < 2:
        return []

    def setting(record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in _override_values(record).items()
                            if k not in MODEL_KEYS))

    reference = {setting(r): i for i, r in enumerate(records) if model_label(r) == models[0]}
    return [(reference[setting(r)], i) for i, r in enumerate(records)
            if model_label(r) != models[0] and setting(r) in reference]


def sweep_comparisons(records: Sequence[dict[str, Any]],
                      results: Sequence[list[ProblemResult] | None], stats: dict[str, Any]
                      ) -> list[dict[str, Any]]:
    """The paired bootstrap of every (reference, other) pair of jobs (``paired_jobs``) whose
    results.jsonl files are both there, with how the two jobs' problem sets or graders differ
    (``stamp_differences``; empty when they agree)."""
    found = []
    for a, b in paired_jobs(records):
        if results[a] is None or results[b] is None:
            continue
        ks = sorted(set(records[a].get("ks", [])) & set(records[b].get("ks", [])))
        comparison = compare(results[a], results[b], ks=ks, label_a=model_label(records[a]),
                             label_b=model_label(records[b]), **stats)
        found.append({"reference_job": records[a]["job"], "job": records[b]["job"],
                      "comparison": comparison,
                      "stamp_differences": stamps.differences(
                          records[a], records[b], f"job {records[a]['job']}",
                          f"job {records[b]['job']}")})
    return found


def comparison_markdown(found: Sequence[dict[str, Any]]) -> str:
    """One section per compared pair: the table of ``ssd.bootstrap.comparison_table``."""
    if not found:
        return ""
    lines = ["", "## Paired comparisons with the sweep's first model", ""]
    for item in found:
        comparison = item["comparison"]
        header, rows = comparison_table(comparison)
        lines += [f"### job {item['job']} against job {item['reference_job']}", ""]
        if item["stamp_differences"]:
            lines += [stamps.warning(item["stamp_differences"]), ""]
        lines += [markdown_table(header, rows) + "\n",
                  comparison_note(comparison), ""]
    return "\n".join(lines)


def write_sweep_summary(sweep_dir: Path, stats: dict[str, Any] | None = None
                        ) -> dict[str, Any] | None:
    """Write summary.md, summary.json and the plot into ``sweep_dir``; None if no job finished.
    ``stats`` (``ssd.config.stats_options``; default: the bootstrap's defaults) sets the
    intervals' resamples and seed."""
    records = read_job_metrics(sweep_dir)
    if not records:
        print(f"evaluate sweep: no metrics.json under {sweep_dir}; no summary")
        return None
    stats = stats or {}
    results = [job_results(r) for r in records]
    intervals = [passk_intervals(found, ks=r.get("ks", []), **stats)["overall"]
                 if found else None for r, found in zip(records, results, strict=True)]
    columns, rows = sweep_rows(records, intervals)
    table = records_table(columns, rows)
    best = best_row(rows)
    plotted = plot_sweep(records, rows, sweep_dir / PLOT_NAME)
    comparisons = sweep_comparisons(records, results, stats)
    found = stamps.groups((f"job {r['job']}", r) for r in records)
    header = (f"# evaluate sweep: {len(rows)} jobs\n\n"
              + "\n".join(stamps.group_lines(found, "job")) + "\n\n")
    footer = (f"\nbest pass@1: {_cell(best['pass@1'])} (job {best['job']}, T={_cell(best['T'])})\n"
              if best else "")
    footer += ("\nIntervals: bootstrap over each job's problems (ssd/bootstrap.py).\n"
               if any(found is not None for found in results) else "")
    (sweep_dir / "summary.md").write_text(header + table + footer
                                          + comparison_markdown(comparisons))
    summary = {"sweep_dir": str(sweep_dir), "columns": columns, "rows": rows, "best": best,
               "plot": PLOT_NAME if plotted else None, "stamps": found,
               "comparisons": [{**item, "comparison": item["comparison"].to_dict()}
                               for item in comparisons]}
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(header + table + footer + f"evaluate sweep: summary in {sweep_dir}")
    return summary


class SweepSummary(Callback):
    """Hydra callback: the sweep's table and plot once every job has returned."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(Path(str(config.hydra.sweep.dir)), stats_options(config))
