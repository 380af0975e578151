"""An evaluation suite (``eval.format=suite``): several conf/eval presets for one model in one
process, so one vLLM engine start serves them all (``ssd.sampling.get_engine`` keeps the engine
between jobs with the same engine settings, as a temperature sweep does).

    python evaluate.py eval=transfer model.path=<model>      # the paper's Table 5, seven sets
    python evaluate.py eval=transfer eval.limit=3            # the first 3 problems of every set
    python evaluate.py eval=transfer eval.completions=<dir>  # <dir>/<set>.jsonl, no model

Every member is an ordinary evaluation run (``run_evaluation`` on the composed config with the
member preset as its ``eval`` group): its own content-addressed run directory, resume, identity
and metrics.json, exactly as ``evaluate.py eval=<member>`` would make them (so a member already
evaluated alone is reused). The suite's keys ``limit``, ``n`` and ``ks`` apply to every member
when set (null: each preset's own); ``grader`` and ``workers`` are passed on.

The suite then writes its index into its own directory, named by the members' identities
(``runs/evaluate/<model>/<suite name>/<decoding>-<hash>/``, or ``output_dir``, members under it):

    transfer.json   per member: run directory, metric (pass@1 for code, accuracy for the answer
                    sets: the mean over problems of the share of right samples), value and
                    bootstrap interval, pass@k where n >= k, failure counts (no_answer,
                    code_block_instead), MMLU's per-subject accuracies with intervals and their
                    macro mean, and the messages of the member's first problem (the prompt)
    transfer.md     the same for one model, in the paper's Table 5 layout

``python analyze.py command=transfer transfer.base=<suite dir> transfer.ssd=<suite dir>``
compares two suites (base and SSD) with paired intervals, without sampling again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from ssd import sampling as engine_module
from ssd.bootstrap import passk_intervals, problem_results
from ssd.config import REPO_ROOT, ConfigError, is_int, require, stats_options
from ssd.evaluation.answers import CODE_BLOCK_INSTEAD, NO_ANSWER
from ssd.evaluation.run import (
    SUITE,
    evaluation_plan,
    hydra_job_dir,
    load_problems,
    output_dir,
    run_evaluation,
    validate,
)
from ssd.evaluation.tasks import TASKS, messages_for
from ssd.identity import StagePlan, stage_identity
from ssd.records import read_records, write_json_atomic
from ssd.tables import markdown_table

PRESETS = REPO_ROOT / "conf" / "eval"
INDEX_VERSION = 1
INDEX_FILE = "transfer.json"
# Keys of a suite's eval group that every member takes when they are not null.
PASSED_WHEN_SET = ("limit", "n", "ks")
PASSED = ("grader", "workers")  # evaluate.yaml's eval keys, the same for every member
# Table 5's column names for the transfer presets; other members are named by their preset.
COLUMNS = {"aime24": "AIME'24", "aime25": "AIME'25", "humaneval": "HumanEval Py",
           "humaneval_sh": "HumanEval Sh", "cruxeval_input": "CruxEval I",
           "cruxeval_output": "CruxEval O", "mmlu": "MMLU"}
FAILURES = (NO_ANSWER, CODE_BLOCK_INSTEAD)


def is_suite(cfg: DictConfig) -> bool:
    return cfg.eval.format == SUITE


def member_config(cfg: DictConfig, name: str) -> DictConfig:
    """The composed config with preset ``name`` as its eval group (the suite's set keys over it),
    as ``evaluate.py eval=<name>`` would compose it."""
    e = cfg.eval
    values = OmegaConf.load(PRESETS / f"{name}.yaml")
    passed = {key: e[key] for key in PASSED}
    passed.update({key: e[key] for key in PASSED_WHEN_SET if e[key] is not None})
    passed["completions"] = (None if e.completions is None
                             else str(Path(e.completions) / f"{name}.jsonl"))
    member = cfg.copy()
    with open_dict(member):
        member.eval = OmegaConf.merge(values, passed)
        if cfg.output_dir:
            member.output_dir = str(Path(cfg.output_dir) / name)
    return member


def check_suite(cfg: DictConfig) -> list[DictConfig]:
    """The suite's keys and every member's whole config, checked before anything starts."""
    members = require(cfg, "eval.suite", lambda v: len(v) >= 1 and len(set(v)) == len(v) and all(
        isinstance(m, str) and (PRESETS / f"{m}.yaml").is_file() for m in v),
        "a non-empty list of distinct conf/eval presets, e.g. [aime24, mmlu]")
    if any(OmegaConf.load(PRESETS / f"{m}.yaml").get("format") == SUITE for m in members):
        raise ConfigError(f"eval.suite={list(members)}: a suite cannot hold a suite")
    require(cfg, "eval.completions", lambda v: v is None or all(
        (Path(v) / f"{m}.jsonl").is_file() for m in members),
            "null, or a folder holding <set>.jsonl for every set of eval.suite (completions made "
            "elsewhere, or earlier runs' results.jsonl: scored without a model)")
    require(cfg, "eval.limit", lambda v: v is None or (is_int(v) and v >= 1),
            "an integer >= 1 (the first problems of every set), or null for whole sets")
    require(cfg, "eval.n", lambda v: v is None or (is_int(v) and v >= 1),
            "an integer >= 1 (samples per problem for every set), or null for each preset's own")
    configs = [member_config(cfg, name) for name in members]
    for member in configs:
        validate(member)
    return configs


def suite_dir(cfg: DictConfig, identity: str) -> Path:
    """Where the suite's index goes: named like an evaluation run, without a sample count (each
    set may have its own)."""
    return output_dir(cfg, identity, samples_in_name=False)


# -- the index (pure on records) ----------------------------------------------------------------
def _interval(found: Any) -> dict[str, float]:
    return {"value": found.estimate, "low": found.low, "high": found.high}


def member_entry(name: str, metrics: dict[str, Any], records: list[dict[str, Any]],
                 stats: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
    """One member's line of the index: its metric with bootstrap intervals (overall, and per
    subject for MMLU), pass@k, failure counts, the prompt of its first problem."""
    fmt = metrics["eval"]["format"]
    answers = fmt in TASKS and TASKS[fmt].answer is not None
    intervals = passk_intervals(problem_results(records), ks=metrics["ks"], **stats)
    overall = intervals["overall"]
    entry: dict[str, Any] = {
        "benchmark": name, "column": COLUMNS.get(name, name), "format": fmt,
        "run_dir": str(Path(metrics["run_dir"]).resolve()),
        "metric": "accuracy" if answers else "pass@1",
        **_interval(overall[1]),
        "pass@k": {f"pass@{k}": _interval(found) for k, found in overall.items()},
        "problems": metrics["problems"], "samples": metrics["samples"], "n": metrics["n"],
        "reasons": metrics["reasons"],
        "failures": {reason: metrics["reasons"].get(reason, 0) for reason in FAILURES},
        "problem_set": metrics["problem_set"], "grader": metrics["grader"],
        "messages": messages,
    }
    if fmt == "mmlu":  # a problem's difficulty label is its subject
        subjects = {scope: _interval(found[1]) | {
            "problems": metrics["per_difficulty"][scope]["problems"]}
            for scope, found in intervals.items() if scope != "overall"}
        entry["per_subject"] = subjects
        entry["macro"] = sum(s["value"] for s in subjects.values()) / len(subjects)
    return entry


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def one_model_markdown(index: dict[str, Any]) -> str:
    """transfer.md: one row in Table 5's layout, then each set's details."""
    entries = index["benchmarks"]
    header = ["model", *(e["column"] for e in entries)]
    row = [index["model_name"] or str(index["model"]),
           *(f"{_percent(e['value'])} [{_percent(e['low'])}, {_percent(e['high'])}]"
             for e in entries)]
    decoding, truncation = index["decoding"], index["truncation"]
    how = (f"decoding T={decoding['T']}, top-k {truncation['top_k']}, top-p "
           f"{truncation['top_p']}, max_tokens {decoding['max_tokens']}" if decoding
           else "scored from given completions")
    lines = [f"# Out-of-domain transfer: {row[0]}", "",
             f"Model `{index['model']}`; {how}; {index['engine_starts']} engine start(s) in this "
             "process.", "",
             markdown_table(header, [row]), "",
             "Percent, with 95% bootstrap intervals over each set's problems (ssd/bootstrap.py). "
             "Code sets: pass@1 over n samples; AIME and MMLU: accuracy, the mean share of right "
             "samples.", "",
             markdown_table(
                 ["set", "metric", "value [95% CI]", "pass@k", "problems x n", "no answer",
                  "code block instead", "problem set", "run"],
                 [[e["column"], e["metric"],
                   f"{_percent(e['value'])} [{_percent(e['low'])}, {_percent(e['high'])}]",
                   ", ".join(f"{k} {_percent(v['value'])}" for k, v in e["pass@k"].items()),
                   f"{e['problems']} x {e['n']}", e["failures"][NO_ANSWER],
                   e["failures"][CODE_BLOCK_INSTEAD],
                   f"{e['problem_set']['name']} ({e['problem_set']['problems']})",
                   f"`{e['run_dir']}`"] for e in entries])]
    for e in entries:
        if "macro" in e:
            lines += ["", f"{e['column']}: macro accuracy over {len(e['per_subject'])} subjects "
                      f"{_percent(e['macro'])} (overall {_percent(e['value'])})."]
    lines += ["", "## Prompts (each set's first problem, before the chat template)", ""]
    for e in entries:
        shown = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in e["messages"])
        lines += [f"### {e['column']}", "", "```text", shown[:1500], "```", ""]
    return "\n".join(lines)


# -- the suite ----------------------------------------------------------------------------------
def suite_plan(cfg: DictConfig) -> StagePlan:
    """The suite's folder and identity (its members' identities): complete when its index
    (transfer.json) holds that identity, as any stage's record."""
    identities = {m.eval.name: evaluation_plan(m).identity for m in check_suite(cfg)}
    identity = stage_identity("transfer", INDEX_VERSION, {"members": identities}, {})
    return StagePlan("transfer", suite_dir(cfg, identity), identity, INDEX_FILE)


def run_suite(cfg: DictConfig) -> Path:
    """Every member's evaluation in this process, then the index; returns the suite's folder."""
    members = check_suite(cfg)
    stats = stats_options(cfg)
    plan = suite_plan(cfg)
    identity, out = plan.identity, plan.run_dir
    started = time.perf_counter()
    entries = []
    for member in members:
        run_dir = run_evaluation(member, publish=False)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        records = list(read_records(run_dir / "results.jsonl"))
        problems, _ = load_problems(member)
        first = messages_for(member.eval)(problems[0])
        wanted = {p.question_id for p in problems}
        records = [r for r in records if r["question_id"] in wanted]
        entries.append(member_entry(member.eval.name, metrics, records, stats, first))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    sampled = cfg.eval.completions is None
    index = {"suite": cfg.eval.name, "identity": identity,
             "model": cfg.model.path if sampled else f"completions {cfg.eval.completions}",
             "model_name": cfg.model.name if sampled else None,
             "decoding": OmegaConf.to_container(members[0].decoding, resolve=True)
             if sampled else None,
             "truncation": OmegaConf.to_container(cfg.truncation, resolve=True)
             if sampled else None,
             "engine_starts": engine_module.engine_starts, "stats": stats,
             "seconds": round(time.perf_counter() - started, 3), "benchmarks": entries,
             "config": resolved}
    out.mkdir(parents=True, exist_ok=True)
    plan.write_record(index)  # transfer.json, marked complete
    (out / "transfer.md").write_text(one_model_markdown(index) + "\n")
    job_dir = hydra_job_dir()
    if job_dir is not None:
        job_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(job_dir / "transfer.json", {**index, "suite_dir": str(out.resolve())})
    print(one_model_markdown(index).split("\n\nPercent")[0])
    print(f"evaluate: suite {cfg.eval.name}: {len(entries)} sets, "
          f"{engine_module.engine_starts} engine start(s); index in {out}")
    return out
