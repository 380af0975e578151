"""``analyze.py command=transfer``: the paper's Table 5 for your model, base against SSD, from two
existing transfer suites (``evaluate.py eval=transfer``), without sampling again.

    python analyze.py command=transfer transfer.base=<base suite dir> transfer.ssd=<SSD suite dir>

Each suite's ``transfer.json`` names its sets' run directories; their ``results.jsonl`` give
each problem's (n, c), and ``ssd.bootstrap.compare`` pairs the two models on the problems both
were evaluated on: each set's +SSD - base difference with its 95% interval and p-value (MMLU also
per subject, and the macro mean). Written into the output folder:

    transfer.md     Table 5's layout: rows base, +SSD and the difference, columns AIME'24,
                    AIME'25, HumanEval Py, Sh, CruxEval I, O, MMLU; the failure counts (no final
                    answer, a code block instead); the paper's rows beside when the base model is
                    one of its presets; each set's prompt, problem set and grader
    transfer.json   every number above
    W&B             (logger=wandb) the table ``transfer/table`` and scalars
                    ``transfer/<set>/ssd_minus_base`` with ``/low``, ``/high``, ``/p``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd import stamps
from ssd.bootstrap import compare, comparison_note, problem_results
from ssd.config import ConfigError, require, stats_options
from ssd.records import read_records
from ssd.tables import markdown_table
from ssd.tracking import log_wandb

INDEX = "transfer.json"
FAILURES = ("no_answer", "code_block_instead")
# The paper's Table 5 (percent; base, +SSD), columns in COLUMN order, read from
# ../shared/paper/ssd-paper.txt (its OCR drops the decimal points: "652" is 65.2).
COLUMN_ORDER = ("AIME'24", "AIME'25", "HumanEval Py", "HumanEval Sh", "CruxEval I",
                "CruxEval O", "MMLU")
PAPER_TABLE5: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "llama3.1-8b-instruct": ((4.7, 2.0, 65.2, 25.3, 33.9, 5.9, 68.4),
                             (0.3, 0.3, 67.1, 29.1, 38.8, 10.1, 68.3)),
    "qwen3-4b-instruct-2507": ((61.3, 44.6, 87.8, 47.5, 85.5, 77.6, 70.6),
                               (55.0, 43.3, 88.4, 31.7, 86.8, 77.6, 70.0)),
    "qwen3-4b-thinking-2507": ((85.0, 76.7, 86.0, 41.1, 43.0, 39.5, 68.7),
                               (84.3, 77.7, 87.2, 38.6, 52.4, 49.6, 68.7)),
    "qwen3-30b-a3b-instruct-2507": ((77.3, 58.5, 95.1, 51.3, 90.3, 82.9, 80.2),
                                    (78.9, 58.1, 94.5, 50.6, 91.6, 81.1, 80.1)),
    "qwen3-30b-a3b-thinking-2507": ((91.3, 80.5, 94.5, 52.5, 94.4, 92.4, 78.7),
                                    (90.6, 80.1, 95.1, 50.6, 92.5, 91.6, 78.4)),
}


def read_index(key: str, value: Any) -> dict[str, Any]:
    """A suite's transfer.json, from its folder or the file itself."""
    path = Path(str(value))
    if path.is_dir():
        path = path / INDEX
    if not path.is_file():
        raise ConfigError(f"{key}={value}: not a transfer suite (no {INDEX}); make one with "
                          "`python evaluate.py eval=transfer model.path=<model>`")
    return json.loads(path.read_text())


def _set_results(entry: dict[str, Any], key: str) -> list[Any]:
    results = Path(entry["run_dir"]) / "results.jsonl"
    if not results.is_file():
        raise ConfigError(f"{key}: {entry['benchmark']}'s results are gone ({results})")
    return problem_results(read_records(results))


def compare_suites(base: dict[str, Any], ssd: dict[str, Any], stats: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    """Per set both suites hold (in the base suite's order): both models' metric with its
    interval, the paired difference, failure counts, MMLU's subjects and macro mean."""
    theirs = {e["benchmark"]: e for e in ssd["benchmarks"]}
    rows = []
    for a in base["benchmarks"]:
        b = theirs.get(a["benchmark"])
        if b is None:
            continue
        comparison = compare(_set_results(a, "transfer.base"), _set_results(b, "transfer.ssd"),
                             ks=[1], label_a="base", label_b="+SSD", **stats)
        overall = comparison.scopes["overall"][1]
        row: dict[str, Any] = {
            "benchmark": a["benchmark"], "column": a["column"], "metric": a["metric"],
            "base": vars(overall.a), "ssd": vars(overall.b),
            "difference": vars(overall.difference), "p": overall.p_value,
            "problems": comparison.problems, "only_base": comparison.only_a,
            "only_ssd": comparison.only_b, "n": [a["n"], b["n"]],
            "failures": {"base": a["failures"], "ssd": b["failures"]},
            "samples": [a["samples"], b["samples"]],
            "stamp_differences": stamps.differences(a, b, "base", "+SSD"),
            "note": comparison_note(comparison), "messages": [a["messages"], b["messages"]],
            "problem_set": a["problem_set"], "grader": a["grader"]["name"],
        }
        subjects = {scope: by_k[1] for scope, by_k in comparison.scopes.items()
                    if scope != "overall"}
        if "per_subject" in a and subjects:
            row["per_subject"] = {s: {"base": d.a.estimate, "ssd": d.b.estimate,
                                      "difference": vars(d.difference), "p": d.p_value,
                                      "problems": comparison.scope_problems[s]}
                                  for s, d in subjects.items()}
            row["macro"] = {
                "base": sum(d.a.estimate for d in subjects.values()) / len(subjects),
                "ssd": sum(d.b.estimate for d in subjects.values()) / len(subjects)}
        rows.append(row)
    if not rows:
        raise ConfigError("transfer.base and transfer.ssd share no set")
    return rows


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _ci(i: dict[str, float], signed: bool = False) -> str:
    f = (lambda v: f"{100 * v:+.1f}") if signed else _pct
    return f"{f(i['estimate'])} [{f(i['low'])}, {f(i['high'])}]"


def table(rows: list[dict[str, Any]], paper: tuple[tuple[float, ...], ...] | None
          ) -> tuple[list[str], list[list[str]]]:
    """Table 5's layout: base, +SSD, the difference (and the paper's rows), one column a set."""
    header = ["", *(r["column"] for r in rows)]
    body = [["base", *(_ci(r["base"]) for r in rows)],
            ["+SSD", *(_ci(r["ssd"]) for r in rows)],
            ["+SSD - base", *(f"{_ci(r['difference'], signed=True)} (p {r['p']:.2g})"
                              for r in rows)]]
    if paper is not None:
        at = {c: i for i, c in enumerate(COLUMN_ORDER)}
        cells = [[f"{values[at[r['column']]]:.1f}" if r["column"] in at else "–" for r in rows]
                 for values in paper]
        body += [["paper: base", *cells[0]], ["paper: +SSD", *cells[1]],
                 ["paper: +SSD - base", *(
                     f"{paper[1][at[r['column']]] - paper[0][at[r['column']]]:+.1f}"
                     if r["column"] in at else "–" for r in rows)]]
    return header, body


def report_markdown(base: dict[str, Any], ssd: dict[str, Any], rows: list[dict[str, Any]],
                    paper_model: str | None) -> str:
    paper = PAPER_TABLE5.get(paper_model) if paper_model else None
    header, body = table(rows, paper)
    title = base.get("model_name") or base.get("model")
    lines = [f"# Out-of-domain transfer (Table 5): {title}, base vs +SSD", "",
             f"base: `{base.get('model')}` (suite `{base['identity']}`), decoding "
             f"{_decoding(base)}; +SSD: `{ssd.get('model')}` (suite `{ssd['identity']}`), "
             f"decoding {_decoding(ssd)}.", "", markdown_table(header, body), "",
             "Percent. Code sets: pass@1; AIME and MMLU: accuracy (the mean share of right "
             "samples). Each value with its 95% bootstrap interval; the difference's interval and "
             "p from the paired bootstrap over the problems both models were evaluated on. "
             + (f"The paper's rows: Table 5, {paper_model} (the paper does not state its prompts, "
                "sample counts or temperatures for these sets)." if paper else
                "The paper's rows appear when the model is one of its presets.")]
    lines += ["", "## Failures: no final answer, or a code block instead (samples)", "",
              markdown_table(["set", "samples base / +SSD", "base: no answer", "base: code block",
                          "+SSD: no answer", "+SSD: code block"],
                         [[r["column"], f"{r['samples'][0]} / {r['samples'][1]}",
                           *(str(r["failures"][who][f]) for who in ("base", "ssd")
                             for f in FAILURES)] for r in rows])]
    for r in rows:
        if "macro" in r:
            lines += ["", f"{r['column']}: macro accuracy over {len(r['per_subject'])} subjects, "
                      f"base {_pct(r['macro']['base'])}, +SSD {_pct(r['macro']['ssd'])} "
                      f"({100 * (r['macro']['ssd'] - r['macro']['base']):+.1f}); per subject "
                      "with paired intervals in transfer.json."]
    lines += ["", "## Sets", ""]
    for r in rows:
        lines += [f"- {r['column']}: {r['problems']} problems, n = {r['n'][0]} / {r['n'][1]}, "
                  f"{stamps.describe_set(r['problem_set'])}, grader {r['grader']}. {r['note']}"]
        if r["stamp_differences"]:
            lines.append(f"  {stamps.warning(r['stamp_differences'])}")
    return "\n".join(lines) + "\n"


def _decoding(index: dict[str, Any]) -> str:
    d, t = index.get("decoding"), index.get("truncation") or {}
    if d is None:
        return "none (scored from given completions)"
    return (f"T {d.get('T')}, top-k {t.get('top_k')}, top-p {t.get('top_p')}, max_tokens "
            f"{d.get('max_tokens')}")


def run_transfer(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Read both suites, compare them, write transfer.md / transfer.json, log the W&B table."""
    base = read_index("transfer.base", require(cfg, "transfer.base", lambda v: v is not None,
                                               "a base-model transfer suite folder"))
    ssd = read_index("transfer.ssd", require(cfg, "transfer.ssd", lambda v: v is not None,
                                             "an SSD-model transfer suite folder"))
    payload = transfer_report(cfg, base, ssd, out)
    print((out / "transfer.md").read_text())
    return payload


def transfer_report(cfg: DictConfig, base: dict[str, Any], ssd: dict[str, Any], out: Path
                    ) -> dict[str, Any]:
    """Compare two suite indexes; write transfer.md into ``out``, log the W&B table; returns
    what transfer.json holds."""
    stats = stats_options(cfg)
    rows = compare_suites(base, ssd, stats)
    paper_model = base.get("model_name") if base.get("model_name") in PAPER_TABLE5 else None
    text = report_markdown(base, ssd, rows, paper_model)
    (out / "transfer.md").write_text(text)
    header, body = table(rows, PAPER_TABLE5.get(paper_model) if paper_model else None)
    scalars = {}
    for r in rows:
        name = f"transfer/{r['benchmark']}/ssd_minus_base"
        scalars.update({name: r["difference"]["estimate"], f"{name}/low": r["difference"]["low"],
                        f"{name}/high": r["difference"]["high"], f"{name}/p": r["p"]})
    payload = {"base": {k: base.get(k) for k in ("model", "model_name", "identity", "decoding",
                                                  "truncation")},
               "ssd": {k: ssd.get(k) for k in ("model", "model_name", "identity", "decoding",
                                                "truncation")},
               "paper_model": paper_model,
               "paper": PAPER_TABLE5.get(paper_model) if paper_model else None,
               "columns": header, "table": body, "sets": rows, "stats": stats}
    payload["wandb"] = log_wandb(cfg, out, stage="analyze", run_id=f"transfer-{base['identity']}"
                                 f"-{ssd['identity']}", metrics=scalars,
                                 tables={"transfer/table": (header, body)})
    return payload
