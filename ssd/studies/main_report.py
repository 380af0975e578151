"""The ``main`` study's report: Table 2's row, Figure 1 and Section 3.3 / Figure 2.

For each benchmark of the study (lcb_v6, lcb_v5):

* Table 2's layout: overall/easy/medium/hard x pass@1/pass@5; rows base (Table 4's decoding),
  +SSD (the final checkpoint at Table 3's T_eval), their difference with its paired 95% interval
  (``ssd.bootstrap.compare`` over the common problems) and the relative gain; the paper's rows
  beside for a paper preset.
* Figure 2 / Section 3.3: the base model's decode-only temperature sweep against the SSD result,
  and SSD's margin over the *best* sweep point, overall and on hard problems, pass@1 and pass@5,
  each with its paired interval. The best point is picked on the reported problems, which favours
  the base model: the margin is conservative.

Figure 1: base and +SSD bars (pass@1, pass@5) per benchmark with their intervals.
Written: ``report.md``, ``main.json``, ``figure1.png``, ``figure2_<benchmark>.png``; W&B tables
``study/table2/<benchmark>`` and ``study/margins/<benchmark>`` with ``logger=wandb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.bootstrap import Comparison, compare, comparison_note
from ssd.config import ConfigError, stats_options
from ssd.plotting import pyplot, save_figure
from ssd.records import write_json_atomic
from ssd.studies.paper_numbers import TABLE2_COLUMNS, paper_row
from ssd.studies.results import (
    OVERALL,
    EvalRun,
    label_values,
    one_run,
    percent,
    runs_of,
    scope_order,
    signed_points,
)
from ssd.studies.spec import BEST_OF, StageSpec
from ssd.tables import markdown_table
from ssd.tracking import log_wandb

KS = (1, 5)
MARGIN_SCOPES = (OVERALL, "hard")
REPORT_FILE, JSON_FILE, FIGURE1 = "report.md", "main.json", "figure1.png"


def check(cfg: DictConfig, specs: Sequence[StageSpec]) -> None:
    """Each benchmark has an ``ssd`` and a ``base`` stage; SSD reports one checkpoint: the final
    one, or the best on a selection set that shares no problem with the reported ones."""
    benchmarks = sorted({str(s.labels["benchmark"]) for s in specs
                         if s.script == "evaluate" and "benchmark" in s.labels})
    for spec in specs:
        if spec.role == "ssd" and not (spec.checkpoints == "last"
                                       or spec.checkpoints.startswith(BEST_OF)):
            raise ConfigError(f"study.checkpoints={spec.checkpoints}: the main study reports one "
                              "checkpoint: last (the final one) or best_of:select (the best on "
                              "study.select_on, a set apart from the reported ones)")
    if any(s.role == "select" for s in specs):
        check_selection_set(str(cfg.study.select_on), benchmarks)
    for benchmark in benchmarks:
        roles = {s.role for s in specs if s.labels.get("benchmark") == benchmark}
        missing = {"ssd", "base"} - roles
        if missing:
            raise ConfigError(f"study.stages: benchmark {benchmark} has no "
                              f"{' or '.join(sorted(missing))} stage (role: ssd, base)")


def check_selection_set(select_on: str, reported: Sequence[str]) -> None:
    """The checkpoint is chosen on other problems than the reported ones: not a reported set,
    and sharing no question id with one (named LiveCodeBench sets are compared by their ids)."""
    from ssd.evaluation import named_set_ids

    if select_on in reported:
        raise ConfigError(f"study.select_on={select_on}: is a reported benchmark; choose the "
                          "checkpoint on another set (the report would flatter the SSD model)")
    chosen = set(named_set_ids(select_on) or [])
    for benchmark in reported:
        shared = chosen & set(named_set_ids(benchmark) or [])
        if shared:
            raise ConfigError(f"study.select_on={select_on}: shares {len(shared)} problems with "
                              f"the reported {benchmark}; choose a disjoint set")


# -- tables (pure) ------------------------------------------------------------------------------
def table2(comparison: Comparison, paper: Mapping[str, Sequence[float]] | None
           ) -> tuple[list[str], list[list[str]]]:
    """Table 2's layout for one benchmark: base, +SSD, difference [CI], relative gain (and the
    paper's rows)."""
    scopes = scope_order(list(comparison.scopes))
    columns = [(k, s) for k in KS for s in scopes if k in comparison.scopes[s]]
    header = ["", *(f"pass@{k} {s} ({comparison.scope_problems[s]})" for k, s in columns)]
    found = [comparison.scopes[s][k] for k, s in columns]
    rows = [["base", *(percent(d.a.estimate) for d in found)],
            ["+SSD", *(percent(d.b.estimate) for d in found)],
            ["+SSD − base [95% CI]", *(
                f"{signed_points(d.difference.estimate)} [{signed_points(d.difference.low)}, "
                f"{signed_points(d.difference.high)}]" for d in found)],
            ["relative gain", *(f"{100 * d.difference.estimate / d.a.estimate:+.1f}%"
                                if d.a.estimate > 0 else "–" for d in found)]]
    if paper is not None:
        by_column = {name: i for i, name in enumerate(TABLE2_COLUMNS)}

        def cells(values: Sequence[float], form: str = ".1f") -> list[str]:
            return [format(values[by_column[f"pass@{k} {s}"]], form)
                    if f"pass@{k} {s}" in by_column else "–" for k, s in columns]

        base, ssd = paper["base"], paper["ssd"]
        rows += [["paper: base", *cells(base)], ["paper: +SSD", *cells(ssd)],
                 ["paper: difference",
                  *cells([b - a for a, b in zip(base, ssd, strict=True)], "+.1f")]]
    return header, rows


def best_point(sweep: Sequence[EvalRun], k: int, scope: str) -> EvalRun | None:
    """The sweep run with the highest pass@k on ``scope`` (the lowest T on a tie)."""
    measured = [r for r in sweep if r.value(k, scope) is not None]
    return max(sorted(measured, key=lambda r: r.t), key=lambda r: r.value(k, scope),
               default=None)


def margins(sweep: Sequence[EvalRun], ssd: EvalRun, stats: Mapping[str, Any]
            ) -> list[dict[str, Any]]:
    """SSD against the best sweep point per (k, scope), with the paired interval of SSD minus
    that point's run."""
    found, compared = [], {}
    for k in KS:
        for scope in MARGIN_SCOPES:
            best = best_point(sweep, k, scope)
            if best is None or ssd.value(k, scope) is None:
                continue
            key = str(best.run_dir)
            if key not in compared:
                compared[key] = compare(best.results, ssd.results, ks=KS, label_a="base",
                                        label_b="SSD", **stats)
            d = compared[key].scopes.get(scope, {}).get(k)
            found.append({"k": k, "scope": scope, "best_t": best.t,
                          "best_base": best.value(k, scope), "ssd": ssd.value(k, scope),
                          "margin": None if d is None else d.difference.estimate,
                          "low": None if d is None else d.difference.low,
                          "high": None if d is None else d.difference.high,
                          "run_dir": key})
    return found


def margin_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "best base T", "best base", "+SSD", "SSD − best base [95% CI]"]
    body = [[f"pass@{r['k']} {r['scope']}", f"{r['best_t']:g}", percent(r["best_base"]),
             percent(r["ssd"]),
             "–" if r["margin"] is None else f"{signed_points(r['margin'])} "
             f"[{signed_points(r['low'])}, {signed_points(r['high'])}]"] for r in rows]
    return header, body


def sweep_table(sweep: Sequence[EvalRun]) -> tuple[list[str], list[list[str]]]:
    scopes = scope_order(sorted({s for r in sweep for s in r.scopes()}))
    header = ["T", *(f"pass@{k} {s}" for k in KS for s in scopes)]
    return header, [[f"{r.t:g}", *(percent(r.value(k, s)) for k in KS for s in scopes)]
                    for r in sorted(sweep, key=lambda r: r.t)]


# -- figures (edges) ----------------------------------------------------------------------------
def plot_figure1(bars: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Base and +SSD pass@1 / pass@5 per benchmark (overall), with their intervals."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(KS), figsize=(4.5 * len(KS), 3.6), squeeze=False)
    for ax, k in zip(axes[0], KS, strict=True):
        for offset, who, colour in ((-0.2, "base", "#d9a441"), (0.2, "ssd", "#3b6fb6")):
            xs = [i + offset for i in range(len(bars))]
            values = [100 * b[who][k]["estimate"] for b in bars]
            errors = [[100 * (b[who][k]["estimate"] - b[who][k]["low"]) for b in bars],
                      [100 * (b[who][k]["high"] - b[who][k]["estimate"]) for b in bars]]
            ax.bar(xs, values, width=0.4, color=colour, yerr=errors, capsize=3,
                   label="base" if who == "base" else "+SSD")
        ax.set_xticks(range(len(bars)), [b["benchmark"] for b in bars])
        ax.set_ylabel(f"pass@{k} (%)")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_figure2(sweep: Sequence[EvalRun], ssd: EvalRun, found: Sequence[Mapping[str, Any]],
                 path: Path, title: str) -> Path:
    """Figure 2: per (k, scope) the base sweep curve, the SSD result as a line, and the margin
    over the best base point shaded."""
    plt = pyplot()
    panels = [(r["k"], r["scope"], r) for r in found]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    ordered = sorted(sweep, key=lambda r: r.t)
    for ax, (k, scope, margin) in zip(axes[0], panels, strict=True):
        points = [(r.t, r.value(k, scope)) for r in ordered if r.value(k, scope) is not None]
        ax.plot([t for t, _ in points], [100 * v for _, v in points], "o-", color="#d9a441",
                label="base sweep")
        level = 100 * float(ssd.value(k, scope) or 0.0)
        ax.axhline(level, color="#3b6fb6", label="+SSD")
        best = 100 * margin["best_base"]
        ax.axhspan(min(best, level), max(best, level), color="#3b6fb6", alpha=0.15,
                   hatch=None if scope == OVERALL else "//")
        sign = "+" if level >= best else ""
        ax.set_title(f"pass@{k} {scope}: {sign}{level - best:.1f} pp", fontsize=9)
        top = max([level, *(100 * v for _, v in points)])
        ax.set_ylim(0, max(5.0, 1.15 * top))   # an all-zero panel still reads as percent
        ax.set_xlabel("base T_eval")
        ax.set_ylabel(f"pass@{k} (%)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# -- the report ---------------------------------------------------------------------------------
def _interval(d: Any) -> dict[str, float]:
    return {"estimate": d.estimate, "low": d.low, "high": d.high}


def benchmark_section(cfg: DictConfig, payload: Mapping[str, Any], benchmark: str,
                      out: Path) -> tuple[list[str], dict[str, Any]]:
    """One benchmark's markdown and numbers (and its Figure 2)."""
    stats = stats_options(cfg)
    base, ssd = one_run(payload, "base", benchmark=benchmark), one_run(payload, "ssd",
                                                                        benchmark=benchmark)
    if base is None or ssd is None:
        return [f"## {benchmark}", "", "missing: the base or the SSD evaluation", ""], {}
    comparison = compare(base.results, ssd.results, ks=KS, label_a="base", label_b="+SSD",
                         **stats)
    paper = paper_rows(payload, benchmark)
    header, rows = table2(comparison, paper)
    stamp = ssd.metrics.get("problem_set") or {}
    lines = [f"## {benchmark}", "",
             f"Problems: {stamp.get('name')} ({stamp.get('definition')}), "
             f"{comparison.problems} in common; grader {ssd.metrics['grader']['name']}; "
             f"n = {ssd.metrics.get('n')}. base: T {base.t:g} (Table 4); +SSD: checkpoint "
             f"{ssd.checkpoint or 'final'} at T {ssd.t:g} (Table 3).", "",
             markdown_table(header, rows), "", comparison_note(comparison), ""]
    numbers: dict[str, Any] = {"benchmark": benchmark, "comparison": comparison.to_dict(),
                               "table2": {"header": header, "rows": rows},
                               "base_run": str(base.run_dir), "ssd_run": str(ssd.run_dir),
                               "paper": paper}
    sweep = runs_of(payload, "base_sweep", benchmark=benchmark)
    if sweep:
        found = margins(sweep, ssd, stats)
        m_header, m_rows = margin_table(found)
        s_header, s_rows = sweep_table(sweep)
        figure = plot_figure2(sweep, ssd, found, out / f"figure2_{benchmark}.png",
                              f"{benchmark}: base decode-only sweep vs +SSD")
        lines += ["### Against the best point of the base model's temperature sweep "
                  "(Section 3.3, Figure 2)", "", markdown_table(m_header, m_rows), "",
                  "The best base point is picked on these same problems (in the base model's "
                  "favour); the interval is SSD minus that run, paired per problem.", "",
                  f"![Figure 2]({figure.name})", "", "Base sweep:", "",
                  markdown_table(s_header, s_rows), ""]
        numbers.update({"margins": found, "sweep": {"header": s_header, "rows": s_rows},
                        "margin_table": {"header": m_header, "rows": m_rows}})
    overall = comparison.scopes[OVERALL]
    numbers["bars"] = {"benchmark": benchmark,
                       "base": {k: _interval(overall[k].a) for k in overall},
                       "ssd": {k: _interval(overall[k].b) for k in overall}}
    return lines, numbers


def checkpoint_rule(payload: Mapping[str, Any]) -> str:
    """The report's sentence on which checkpoint SSD is: the final one, or the best on the
    selection set with every checkpoint's score there."""
    scored = runs_of(payload, "select")
    if not scored:
        return "checkpoint rule: the final checkpoint (not chosen by score)."
    chosen = one_run(payload, "ssd")
    scores = ", ".join(f"{r.checkpoint} {percent(r.value(1))}"
                       for r in sorted(scored, key=lambda r: r.step or 0))
    return (f"checkpoint rule: the best pass@1 at T_eval on `{scored[0].benchmark}`, a set apart "
            f"from the reported ones: {chosen.checkpoint if chosen else '–'} (of {scores}).")


def paper_rows(payload: Mapping[str, Any], benchmark: str) -> dict[str, Any] | None:
    base = paper_row(payload.get("experiment"), benchmark, "base")
    ssd = paper_row(payload.get("experiment"), benchmark, "ssd")
    return None if base is None or ssd is None else {"base": base, "ssd": ssd}


def write(cfg: DictConfig, payload: Mapping[str, Any], out: Path) -> Path:
    who = payload.get("experiment") or payload["model"]
    lines = [f"# Table 2, Figures 1-2: {who}", "",
             f"Base model `{payload['model_path']}`; SSD: {checkpoint_rule(payload)}", ""]
    sections = []
    for benchmark in label_values(payload, "benchmark"):
        text, numbers = benchmark_section(cfg, payload, benchmark, out)
        lines += text
        if numbers:
            sections.append(numbers)
    bars = [s["bars"] for s in sections]
    if bars:
        figure = plot_figure1(bars, out / FIGURE1, f"{who}: base vs +SSD")
        lines[4:4] = [f"![Figure 1]({figure.name})", ""]
    text = "\n".join(lines)
    (out / REPORT_FILE).write_text(text)
    scalars = {f"study/{s['benchmark']}/ssd_minus_base/pass@{k}":
               s["comparison"]["scopes"][OVERALL][f"pass@{k}"]["difference"]["estimate"]
               for s in sections for k in KS
               if f"pass@{k}" in s["comparison"]["scopes"][OVERALL]}
    tables = {f"study/table2/{s['benchmark']}": (s["table2"]["header"], s["table2"]["rows"])
              for s in sections}
    tables.update({f"study/margins/{s['benchmark']}": (s["margin_table"]["header"],
                                                       s["margin_table"]["rows"])
                   for s in sections if "margin_table" in s})
    wandb = log_wandb(cfg, out, stage="study", run_id=f"study-main-{out.name}",
                      metrics=scalars, tables=tables)
    write_json_atomic(out / JSON_FILE, {"benchmarks": sections, "wandb": wandb})
    return out / REPORT_FILE
