"""After a multirun of evaluate.py: one table and one plot of pass@k against T for the sweep.

Each job leaves a copy of its metrics.json in its Hydra job folder (``<sweep dir>/<job>/``), so the
summary needs nothing but the sweep directory, whichever launcher ran the jobs (the basic one in
this process, or submitit on other machines). ``SweepSummary`` is the Hydra callback
(``hydra.callbacks`` in conf/evaluate.yaml) that writes, into the sweep directory:

    summary.md         the table (markdown), one row per job, sorted by the swept values and T
    summary.json       the same rows, plus the best pass@1
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

from ssd.passk import UNLABELED
from ssd.plotting import pyplot, save_figure

PLOT_NAME = "pass_at_k_vs_T.png"
# Overrides already shown as their own columns.
SHOWN_KEYS = {"decoding.T", "truncation.top_k", "truncation.top_p", "eval.n"}


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


def sweep_rows(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The table: its columns and one row per job, sorted by the other swept values, then T."""
    swept = [k for k in varying_keys(records) if k not in SHOWN_KEYS]
    ks = sorted({k for r in records for k in r.get("ks", [])})
    levels = difficulties(records)
    columns = ["job", *swept, "T", "top_k", "top_p", "n"]
    columns += [f"pass@{k}" for k in ks]
    columns += [f"pass@{k}/{d}" for k in ks for d in levels]
    columns += ["problems", "samples", "engine_starts"]
    rows = []
    for record in records:
        overrides = _override_values(record)
        truncation = record.get("truncation") or {}
        row: dict[str, Any] = {"job": record["job"], **{k: overrides.get(k) for k in swept},
                               "T": record.get("t_eval"), "top_k": truncation.get("top_k"),
                               "top_p": truncation.get("top_p"), "n": record.get("n")}
        for k in ks:
            row[f"pass@{k}"] = record.get(f"pass@{k}")
            for d in levels:
                row[f"pass@{k}/{d}"] = record.get("per_difficulty", {}).get(d, {}).get(
                    f"pass@{k}")
        row.update(problems=record.get("problems"), samples=record.get("samples"),
                   engine_starts=record.get("engine_starts"), run_dir=record.get("run_dir"))
        rows.append(row)
    rows.sort(key=lambda r: ([str(r[k]) for k in swept],
                             r["T"] if r["T"] is not None else float("inf")))
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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


def write_sweep_summary(sweep_dir: Path) -> dict[str, Any] | None:
    """Write summary.md, summary.json and the plot into ``sweep_dir``; None if no job finished."""
    records = read_job_metrics(sweep_dir)
    if not records:
        print(f"evaluate sweep: no metrics.json under {sweep_dir}; no summary")
        return None
    columns, rows = sweep_rows(records)
    table = markdown_table(columns, rows)
    best = best_row(rows)
    plotted = plot_sweep(records, rows, sweep_dir / PLOT_NAME)
    header = f"# evaluate sweep: {len(rows)} jobs\n\n"
    footer = (f"\nbest pass@1: {_cell(best['pass@1'])} (job {best['job']}, T={_cell(best['T'])})\n"
              if best else "")
    (sweep_dir / "summary.md").write_text(header + table + footer)
    summary = {"sweep_dir": str(sweep_dir), "columns": columns, "rows": rows, "best": best,
               "plot": PLOT_NAME if plotted else None}
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table + footer + f"evaluate sweep: summary in {sweep_dir}")
    return summary


class SweepSummary(Callback):
    """Hydra callback: the sweep's table and plot once every job has returned."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(Path(str(config.hydra.sweep.dir)))
