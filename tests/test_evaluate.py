"""evaluate.py: key mapping, prompts, metrics, scoring given completions, the sweep summary, and
end to end on the tiny model with the real vLLM engine (one engine for a whole T sweep)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssd import sampling as engine_module
from ssd.config import ConfigError
from ssd.data.prompts import chat_messages
from ssd.evaluation import PROBLEM_SETS, load_humaneval, load_lcb_offline
from ssd.evaluation.benchmarks import load_check_script_problems
from ssd.evaluation.prompts import eval_messages, prompt_style
from ssd.evaluation.run import (
    check_eval,
    compute_metrics,
    flat_metrics,
    model_label,
    output_dir,
    provenance_t_train,
    run_evaluation,
    run_identity,
)
from ssd.evaluation.sweep import PLOT_NAME, write_sweep_summary
from ssd.passk import pass_at_k
from tests.conftest import REPO, cli_error, compose

FIXTURES = REPO / "tests" / "fixtures" / "lcb"
SOLUTIONS = json.loads((FIXTURES / "solutions.json").read_text())
OFFICIAL = ["eval=lcb_v6", f"eval.path={FIXTURES / 'official_sample.jsonl'}",
            "eval.problem_set=null", "logger=none", "progress=false"]
# The command on the shipped 8-problem slice, made fast: short samples, eager engine.
TINY = ["model=tiny", "eval=lcb_sample", "engine.enforce_eager=true", "progress=false"]


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}```\n"


# -- config: one key per concept -----------------------------------------------------------------
def test_eval_n_sets_the_samples_decoding_uses() -> None:
    cfg = compose("evaluate", ["eval.n=4"])
    assert cfg.decoding.n == 4 and cfg.eval.n == 4
    assert cfg.decoding.T == cfg.recipe.evaluation.T  # Table 3 decoding by default
    base = compose("evaluate", ["decoding=baseline", "truncation=baseline", "eval.n=3"])
    assert base.decoding.n == 3 and base.decoding.T == base.recipe.baseline.T
    assert base.truncation.top_k == base.recipe.baseline.top_k
    paper = compose("evaluate", ["experiment=qwen3-30b-a3b-instruct-2507"])
    assert (paper.decoding.T, paper.decoding.n) == (0.9, 10)
    with pytest.raises(ConfigError, match=r"^decoding\.n=3: .*eval\.n"):
        check_eval(compose("evaluate", ["decoding.n=3"]))


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "conf" / "eval").glob("*.yaml")))
def test_every_eval_preset_composes_and_validates(preset: str) -> None:
    cfg = compose("evaluate", [f"eval={preset}"])
    assert cfg.eval.name == preset and cfg.decoding.n == cfg.eval.n
    if cfg.eval.format != "suite":  # a suite's n and ks are each member's unless set
        assert 1 in cfg.eval.ks and max(cfg.eval.ks) <= cfg.eval.n
    for name in cfg.eval.get("suite") or [preset]:
        path = compose("evaluate", [f"eval={name}"]).eval.path
        if isinstance(path, str) and not path.startswith("hub:") and not Path(path).is_file():
            pytest.skip(f"{path} is not on this machine")
    check_eval(cfg)


def test_official_presets_name_their_problem_sets() -> None:
    for name in ("lcb_v5", "lcb_v6", "lcb_v6_delta"):
        e = compose("evaluate", [f"eval={name}"]).eval
        assert e.problem_set == name and name in PROBLEM_SETS


def test_run_directory_is_named_by_what_decides_the_results(tmp_path: Path) -> None:
    def where(*overrides: str) -> Path:
        cfg = compose("evaluate", ["model=tiny", *overrides])
        return output_dir(cfg, run_identity(cfg))

    base = where()
    assert base.parent == Path("runs/evaluate/tiny/lcb_offline_2408_2501")
    assert base.name.startswith("T1.1_k20_p0.8_n10-")
    assert where() == base
    # Reporting and parallelism do not change the samples: same run (metrics are recomputed).
    assert where("eval.ks=[1]", "eval.workers=3", "logger=none", "progress=false") == base
    for change in ("decoding.T=0.7", "decoding.seed=1", "eval.limit=5", "truncation.top_k=5",
                   "eval.time_limit_s=2", "eval=lcb_sample", "decoding.max_tokens=7"):
        assert where(change) != base, change
    export = tmp_path / "runs" / "train" / "tiny" / "t1-abc" / "hf" / "final"
    export.mkdir(parents=True)
    assert model_label("tiny", str(export)) == "tiny+t1-abc-final"
    assert model_label("tiny", "builtin:tiny") == "tiny"
    assert model_label("qwen", "Qwen/Qwen3-4B") == "qwen"


def test_t_train_from_the_provenance_of_a_train_export(tmp_path: Path) -> None:
    generated = tmp_path / "generate-run"
    generated.mkdir()
    (generated / "run.json").write_text(json.dumps({"config": {"decoding": {"T": 1.6}}}))
    train_run = tmp_path / "train-run"
    (train_run / "hf" / "final").mkdir(parents=True)
    train_set = generated / "filter-0a1b2c3d" / "train.jsonl"
    (train_run / "config.yaml").write_text(f"data:\n  samples: {train_set}\n")
    assert provenance_t_train(str(train_run / "hf" / "final")) == 1.6
    assert provenance_t_train(str(tmp_path)) is None
    assert provenance_t_train("builtin:tiny") is None


# -- bad input: one line naming the key ----------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.limit=0", r"^eval\.limit=0: must be an integer >= 1"),
        ("eval.path=/no/such/lcb.json", r"^eval\.path=/no/such/lcb\.json: must be an existing"),
        ("decoding.T=0", r"^decoding\.T=0: must be > 0"),
        ("eval.n=0", r"^eval\.n=0: must be an integer >= 1"),
        ("eval.ks=[]", r"^eval\.ks=\[\]: must be a non-empty list"),
        ("eval.ks=[11]", r"^eval\.ks=\[11\]: must be a list with at least one k <= eval\.n=10"),
        ("eval.time_limit_s=0", r"^eval\.time_limit_s=0: must be > 0"),
        ("eval.completions=/no/such.jsonl", r"^eval\.completions=/no/such\.jsonl: must be"),
        ("eval.format=csv", r"^eval\.format=csv: must be one of"),
        ("t_train=0", r"^t_train=0: must be > 0"),
    ],
)
def test_bad_values_fail_before_anything_starts(override: str, message: str) -> None:
    starts = engine_module.engine_starts
    with pytest.raises(ConfigError, match=message):
        run_evaluation(compose("evaluate", ["model=tiny", "eval=lcb_sample", override]))
    assert engine_module.engine_starts == starts


def test_bad_value_on_the_command_line_is_one_line_and_status_2(tmp_path: Path) -> None:
    assert cli_error("evaluate", ["eval.limit=0"], tmp_path) == [
        "error: eval.limit=0: must be an integer >= 1, or null for the whole set"]


def test_completions_must_cover_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "partial.jsonl"
    path.write_text(json.dumps({"question_id": "abc900_a", "sample_index": 0,
                                "completion": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"no completions for 4 of 5 problems"):
        run_evaluation(compose("evaluate", [*OFFICIAL, f"eval.completions={path}",
                                            f"output_dir={tmp_path}/out"]))
    path.write_text('{"question_id": "abc900_a", "completion": "x"}\n')
    with pytest.raises(ConfigError, match=r"record 1 lacks question_id"):
        run_evaluation(compose("evaluate", [*OFFICIAL, f"eval.completions={path}"]))


# -- prompts ------------------------------------------------------------------------------------
def test_prompts_by_problem_kind() -> None:
    stdin, functional = (next(p for p in load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")
                              if p.kind == kind) for kind in ("stdin", "functional"))
    assert prompt_style(stdin) == "stdin"
    # stdin problems are asked exactly as generate.py asks its training prompts
    assert eval_messages(stdin) == chat_messages(stdin.content)

    system, user = eval_messages(functional)
    assert prompt_style(functional) == "starter"
    assert "class Solution" in system["content"] and "code block" in system["content"]
    assert user["content"].startswith(functional.content.strip())
    assert f"```python\n{functional.starter_code.rstrip()}\n```" in user["content"]

    leetcode = load_check_script_problems(FIXTURES / "leetcode_train_slice.json")[0]
    _, user = eval_messages(leetcode)  # its statement already quotes the starter code
    assert user["content"].count(leetcode.starter_code.strip()) == 1

    humaneval = load_humaneval()[0]
    system, user = eval_messages(humaneval)
    assert prompt_style(humaneval) == "function" and "Complete the Python function" in \
        system["content"]
    assert user["content"] == f"```python\n{humaneval.content.rstrip()}\n```"


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_count_reasons_and_skip_ks_above_n() -> None:
    problems = load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")[:2]
    a, b = (p.question_id for p in problems)
    records = [
        {"question_id": a, "passed": True, "reason": None, "detail": "", "completion_tokens": 10},
        {"question_id": a, "passed": False, "reason": "no_code", "detail": "no_code_block",
         "completion_tokens": 30, "finish_reason": "length"},
        {"question_id": b, "passed": False, "reason": "wrong_answer", "detail": "test 0"},
        {"question_id": b, "passed": False, "reason": "no_code", "detail": "unclosed_code_block"},
    ]
    m = compute_metrics(records, problems, [1, 5])
    assert m["ks"] == [1] and m["ks_not_reported"] == [5]
    assert m["pass@1"] == pytest.approx(0.25) and m["samples"] == 4 and m["passed"] == 1
    assert m["per_difficulty"] == {"unlabeled": {"pass@1": 0.25, "problems": 2}}
    assert m["reasons"] == {"no_code": 2, "wrong_answer": 1}
    assert m["no_code"] == {"no_code_block": 1, "unclosed_code_block": 1}
    assert m["finish_reasons"] == {"length": 1} and m["mean_completion_tokens"] == 20
    assert flat_metrics(m) == {
        "eval/pass@1": 0.25, "eval/pass@1/unlabeled": 0.25, "eval/problems/unlabeled": 2,
        "eval/problems": 2, "eval/samples": 4, "eval/reason/no_code": 2,
        "eval/reason/wrong_answer": 1, "eval/mean_completion_tokens": 20}


# -- scoring completions made elsewhere (no engine) ----------------------------------------------
# Per problem of the official-format fixture: which programs its five samples are.
PLAN = {
    "abc900_a": ["correct"] * 5,                                       # easy
    "abc901_b": ["correct"] * 2 + ["mutant"] * 3,                      # medium
    "3901": ["correct", "mutant", "mutant", "prose", "unclosed"],      # medium
    "3902": ["mutant"] * 4 + ["crash"],                                # hard
    "1999_c": ["correct"] * 3 + ["mutant"] * 2,                        # easy
}


def _response(question_id: str, kind: str) -> str:
    programs = SOLUTIONS["official"][question_id]
    if kind in ("correct", "mutant"):
        return fenced(programs[kind])
    if kind == "prose":
        return "I would loop over the array and use a dictionary."
    if kind == "unclosed":
        return "```python\nclass Solution:\n    def pairIndices(self, nums"
    return fenced("raise SystemExit(3)\n")


def test_scoring_given_completions_starts_no_engine(tmp_path: Path) -> None:
    completions = tmp_path / "completions.jsonl"
    lines = [{"question_id": qid, "sample_index": i, "completion": _response(qid, kind)}
             for qid, kinds in PLAN.items() for i, kind in enumerate(kinds)]
    lines.append({"question_id": "not-in-the-set", "sample_index": 0, "completion": "x"})
    completions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    starts = engine_module.engine_starts
    out = run_evaluation(compose("evaluate", [
        *OFFICIAL, f"eval.completions={completions}", "eval.ks=[1,2,5]", "eval.workers=2",
        f"output_dir={tmp_path}/out"]))
    assert engine_module.engine_starts == starts

    m = json.loads((out / "metrics.json").read_text())
    correct = {qid: kinds.count("correct") for qid, kinds in PLAN.items()}

    def expected(qids: list[str], k: int) -> float:
        return sum(pass_at_k(5, correct[q], k) for q in qids) / len(qids)

    groups = {"easy": ["abc900_a", "1999_c"], "medium": ["abc901_b", "3901"], "hard": ["3902"]}
    for k in (1, 2, 5):
        assert m[f"pass@{k}"] == pytest.approx(expected(list(PLAN), k))
        for level, qids in groups.items():
            assert m["per_difficulty"][level][f"pass@{k}"] == pytest.approx(expected(qids, k))
    assert m["pass@1"] == pytest.approx(0.44)
    assert (m["problems"], m["samples"], m["passed"], m["n"]) == (5, 25, 11, 5)
    assert m["reasons"] == {"no_code": 2, "runtime_error": 1, "wrong_answer": 11}
    assert m["no_code"] == {"no_code_block": 1, "unclosed_code_block": 1}
    assert m["t_eval"] is None and m["model"] is None and m["engine_starts"] == starts
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 25 and {r["difficulty"] for r in results} == {"easy", "medium", "hard"}
    assert (out / "metrics.csv").read_text().startswith("eval/pass@1,")

    # Complete: a rerun does nothing; other ks are recomputed from results.jsonl, no re-check.
    before = (out / "results.jsonl").read_bytes()
    again = compose("evaluate", [*OFFICIAL, f"eval.completions={completions}", "eval.ks=[1]",
                                 f"output_dir={tmp_path}/out"])
    assert run_evaluation(again) == out and (out / "results.jsonl").read_bytes() == before
    m1 = json.loads((out / "metrics.json").read_text())
    assert m1["ks"] == [1] and m1["pass@1"] == m["pass@1"] and m1["counts"]["checked"] == 0


# -- the sweep summary ----------------------------------------------------------------------------
def _job_metrics(t: float, model: str, p1: dict[str, float]) -> dict:
    per = {d: {"pass@1": v, "pass@5": min(1.0, 2 * v), "problems": 2} for d, v in p1.items()}
    overall = sum(p1.values()) / len(p1)
    return {"t_eval": t, "model_name": model, "eval": {"name": "lcb_v6"}, "ks": [1, 5],
            "pass@1": overall, "pass@5": min(1.0, 2 * overall), "per_difficulty": per,
            "truncation": {"top_k": 20, "top_p": 0.8}, "n": 10, "problems": 6, "samples": 60,
            "engine_starts": 1, "overrides": [f"model.path={model}", f"decoding.T={t}"]}


def test_sweep_summary_table_and_plot(tmp_path: Path) -> None:
    jobs = [(t, m) for m in ("base", "ssd") for t in (1.2, 0.6, 0.9)]
    for number, (t, model) in enumerate(jobs):
        bonus = 0.2 if model == "ssd" else 0.0
        scores = {"easy": 0.6 + bonus, "medium": 0.3 + bonus - abs(t - 0.9) / 10,
                  "hard": 0.1 + bonus / 2}
        (tmp_path / str(number)).mkdir()
        (tmp_path / str(number) / "metrics.json").write_text(
            json.dumps(_job_metrics(t, model, scores)))
    summary = write_sweep_summary(tmp_path)
    assert summary is not None and (tmp_path / PLOT_NAME).stat().st_size > 10_000
    rows = summary["rows"]
    assert [(r["model.path"], r["T"]) for r in rows] == sorted((m, t) for t, m in jobs)
    assert "pass@5/hard" in summary["columns"] and "decoding.T" not in summary["columns"]
    assert summary["best"]["model.path"] == "ssd" and summary["best"]["T"] == 0.9
    table = (tmp_path / "summary.md").read_text()
    assert "| job | model.path | T | top_k | top_p | n | pass@1 | pass@5 | pass@1/easy" in table
    # records from before evaluate.py stated them: the summary says so rather than guess
    assert "Every job (6): problem set not recorded; grader not recorded." in table
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == rows


# -- end to end on the tiny model ----------------------------------------------------------------
@pytest.mark.slow
def test_evaluate_tiny_model_end_to_end_then_resume(tmp_path: Path) -> None:
    """`evaluate.py model=tiny eval=<offline lcb set> eval.limit=8 eval.n=4` (short samples),
    W&B offline; then a torn, partial results.jsonl is completed without duplicates."""
    args = [*TINY, "eval.limit=8", "eval.n=4", "decoding.max_tokens=24"]
    wandb = ["logger=wandb", "logger.wandb.mode=offline", "logger.wandb.group=e2e"]
    out = run_evaluation(compose("evaluate", [*args, *wandb, f"output_dir={tmp_path}/a"]))
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "complete" and (m["problems"], m["samples"], m["n"]) == (8, 32, 4)
    assert m["ks"] == [1] and m["ks_not_reported"] == [5]  # pass@5 needs n >= 5
    assert 0 <= m["pass@1"] <= 0.25  # a random model
    assert set(m["per_difficulty"]) == {"unlabeled"}
    assert sum(m["reasons"].values()) == 32 - m["passed"]
    assert m["t_eval"] == 1.1 and m["decoding"]["n"] == 4 and m["truncation"]["top_k"] == 20
    assert m["wandb"]["group"] == "e2e" and m["wandb"]["mode"] == "offline"
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and b"e2e" in runs[0].read_bytes()
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len({(r["question_id"], r["sample_index"]) for r in results}) == 32
    first = results[0]
    assert 0 < first["completion_tokens"] <= 24 and first["prompt_tokens"] > 0
    assert {"difficulty", "completion", "passed", "reason", "detail", "tests_total",
            "sample_seed", "finish_reason"} <= set(first)

    # Resume: keep 10 records and a torn line, as a kill mid-write leaves.
    partial = tmp_path / "b"
    partial.mkdir()
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (partial / "results.jsonl").write_text("".join(lines[:10]) + '{"question_id": "lcb-')
    starts = engine_module.engine_starts
    resumed = run_evaluation(compose("evaluate", [*args, "logger=none", f"output_dir={partial}"]))
    assert engine_module.engine_starts == starts  # same engine settings: the same engine
    again = [json.loads(x) for x in (resumed / "results.jsonl").read_text().splitlines()]
    keyed = {(r["question_id"], r["sample_index"]): r["completion"] for r in again}
    assert len(again) == len(keyed) == 32  # no duplicates
    assert keyed == {(r["question_id"], r["sample_index"]): r["completion"] for r in results}
    counts = json.loads((resumed / "metrics.json").read_text())["counts"]
    assert (counts["resumed"], counts["generated"]) == (10, 22)
    assert counts["torn_bytes_repaired"] > 0


@pytest.mark.slow
def test_prompt_longer_than_the_context_is_a_failed_sample(tmp_path: Path) -> None:
    out = run_evaluation(compose("evaluate", [
        *TINY, "eval.limit=8", "eval.n=1", "eval.ks=[1]", "decoding.max_tokens=8",
        "engine.max_model_len=320", "logger=none", f"output_dir={tmp_path}"]))
    m = json.loads((out / "metrics.json").read_text())
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    too_long = [r for r in results if r["reason"] == "prompt_too_long"]
    assert m["samples"] == 8 and 0 < len(too_long) < 8  # the fixture's prompts: 244-390 tokens
    assert m["reasons"]["prompt_too_long"] == len(too_long)
    assert all(r["prompt_tokens"] >= 320 and r["completion"] == "" for r in too_long)


@pytest.mark.slow
def test_temperature_sweep_runs_in_one_process_with_one_engine(tmp_path: Path) -> None:
    temperatures = [round(0.6 + 0.1 * i, 1) for i in range(10)]
    sweep = tmp_path / "sweep"
    command = [sys.executable, str(REPO / "evaluate.py"), "-m", *TINY, "eval.limit=2",
               "eval.n=2", "decoding.max_tokens=16", "logger.wandb.mode=offline",
               "decoding.T=" + ",".join(map(str, temperatures)), f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    jobs = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(10)]
    assert [j["t_eval"] for j in jobs] == temperatures
    assert [j["engine_starts"] for j in jobs] == [1] * 10  # one model load for the sweep
    groups = {j["wandb"]["group"] for j in jobs}  # one W&B group: the sweep directory
    assert len(groups) == 1 and groups.pop().endswith(f"{tmp_path.name}_sweep")
    for job in jobs:  # each job is a W&B run, written into its own run directory
        run_dir = Path(job["run_dir"])
        assert run_dir.is_relative_to(tmp_path / "runs" / "evaluate")
        assert len(list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    summary = json.loads((sweep / "summary.json").read_text())
    assert [r["T"] for r in summary["rows"]] == temperatures
    assert all(r["samples"] == 4 for r in summary["rows"])
    assert (sweep / "summary.md").read_text().count("\n| ") == 11
    assert (sweep / PLOT_NAME).stat().st_size > 10_000
