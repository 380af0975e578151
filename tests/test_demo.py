"""demo.py: the report builder on synthetic stage records, the stage overrides it derives, and the
whole chain end to end on the tiny model (real generate.py, train.py and evaluate.py processes),
killed during training and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssd.bootstrap import compare, problem_results
from ssd.config import ConfigError
from ssd.evaluation.problem_sets import PROBLEM_SETS, set_record
from ssd.pipeline.demo import (
    chain,
    check_demo,
    estimate_seconds,
    log_report,
    sizes,
)
from ssd.pipeline.report import (
    DemoRecords,
    EvalRecord,
    build_report,
    clip,
    decontamination_cell,
    fence,
    loss_points,
    pass_rows,
    pick_example,
)
from ssd.pipeline.stages import (
    StageFailed,
    compose_stage,
    computations,
    model_overrides,
    override_value,
)
from tests.conftest import REPO, cli_error, compose, composed_stages
from tests.test_launcher import offline_run, wandb_records


# -- the report (pure) --------------------------------------------------------------------------
def result(qid: str, index: int, passed: bool, completion: str = "print(1)") -> dict:
    return {"question_id": qid, "sample_index": index, "passed": passed,
            "reason": None if passed else "wrong_answer", "detail": "" if passed else "test 0",
            "completion": completion}


HUMANEVAL_SET = set_record("humaneval", "every problem of HumanEval.jsonl.gz, the first 4 in "
                           "file order", [f"HumanEval/{i}" for i in range(4)])
LCB_SET = set_record("lcb_v6", PROBLEM_SETS["lcb_v6"].definition + ", the first 4 in file order",
                     ["abc387_a", "abc387_b", "3701", "3702"])
DEFAULT_GRADER = {"name": "default",
                  "summary": "the project's own semantics (LiveCodeBench's rules where sound)"}


def metrics(pass1: float, pass5: float, problems: int, per_difficulty: dict | None = None,
            T: float = 0.7, problem_set: dict = HUMANEVAL_SET,
            grader: dict = DEFAULT_GRADER) -> dict:
    return {"ks": [1, 5], "pass@1": pass1, "pass@5": pass5, "problems": problems, "n": 5,
            "problem_set": problem_set, "grader": grader,
            "samples": 5 * problems, "passed": 3, "reasons": {"wrong_answer": 2},
            "mean_completion_tokens": 120.0,
            "overall": {"pass@1": pass1, "pass@5": pass5, "problems": problems},
            "per_difficulty": per_difficulty or {"unlabeled": {"pass@1": pass1, "pass@5": pass5,
                                                               "problems": problems}},
            "decoding": {"T": T, "max_tokens": 384, "n": 5, "seed": 0},
            "truncation": {"top_k": 20, "top_p": 0.8, "min_p": 0.0}}


def synthetic_records() -> DemoRecords:
    labelled_base = {"easy": {"pass@1": 0.5, "pass@5": 1.0, "problems": 2},
                     "hard": {"pass@1": 0.0, "pass@5": 0.0, "problems": 2}}
    labelled_ssd = {"easy": {"pass@1": 0.7, "pass@5": 1.0, "problems": 2},
                    "hard": {"pass@1": 0.1, "pass@5": 0.5, "problems": 2}}
    tricky = "Here:\n```python\nprint('```')\n```\n"
    return DemoRecords(
        model="smollm2-135m", scale=1,
        generate={
            "config": {"model": {"path": "builtin:smollm2-135m"},
                       "data": {"name": "codeforces_sample", "limit": 16},
                       "decoding": {"T": 1.6, "n": 1, "max_tokens": 384, "seed": 0},
                       "truncation": {"top_k": 20, "top_p": 0.8}},
            "pool": {"prompts": 16},
            "shards": [{"generated": 16, "prompt_tokens": 8800, "completion_tokens": 4000,
                        "finish_stop": 10, "finish_length": 6, "seconds": 50.0}]},
        generate_dir="runs/generate/g",
        filter={"settings": {"drop_empty": True, "drop_single_line": True,
                             "cut_samples": "keep_open"},
                "samples": 16, "kept": 13, "dropped": {"single_line_stub": 2, "empty": 1},
                "cut_samples": {"policy": "keep_open", "cut": 6, "kept_open": 5},
                "kept_completion_tokens": 3900},
        filter_dir="runs/generate/g/filter-1",
        train={"config": {"trainer": {"max_steps": 8, "global_batch_size": 4,
                                      "max_seq_len": 1024, "precision": "auto"},
                          "optimizer": {"lr": 5e-6, "min_lr": 1e-6, "warmup_steps": 1,
                                        "betas": [0.9, 0.95], "weight_decay": 0.1}},
               "samples": 13, "length_policy": {"truncated": 3, "dropped": 0},
               "training_set": {"tokens": "sampled_ids", "samples": 13, "ended": 8, "open": 5},
               "seconds": 300.0, "world_size": 1, "resumed_from": None,
               "hf_export": "runs/train/t/hf/final"},
        train_dir="runs/train/t",
        loss=[(1, 1.25), (2, 1.0), (3, 0.875)],
        loss_image="loss.png",
        evaluations=[
            EvalRecord("humaneval", "base", metrics(0.25, 0.5, 4),
                       [result("HumanEval/0", 0, False), result("HumanEval/1", 0, False),
                        result("HumanEval/1", 1, True)], "runs/evaluate/b"),
            EvalRecord("lcb_v6", "base", metrics(0.25, 0.5, 4, labelled_base,
                                                 problem_set=LCB_SET), [], "runs/evaluate/b2"),
            EvalRecord("humaneval", "ssd", metrics(0.5, 0.75, 4, T=1.1),
                       [result("HumanEval/0", 0, False), result("HumanEval/1", 0, True, tricky)],
                       "runs/evaluate/s"),
            EvalRecord("lcb_v6", "ssd", metrics(0.4, 0.75, 4, labelled_ssd, T=1.1,
                                                problem_set=LCB_SET), [], "runs/evaluate/s2"),
        ],
        train_example={"messages": [{"role": "system", "content": "You are a coder."},
                                    {"role": "user", "content": "Add two numbers."},
                                    {"role": "assistant", "content": "```python\nprint(3)\n```"}]},
        timings=[("generate", 61.0), ("train", 2.5)],
    )


def test_report_has_settings_counts_curve_tables_examples_and_the_caveat() -> None:
    report = build_report(synthetic_records())
    assert report.startswith("# SSD demo: smollm2-135m")
    assert "| generation (T_train) | T=1.6, top-k 20, top-p 0.8, N=1, max_tokens 384" in report
    assert "| SSD model evaluation (T_eval) | T=1.1, top-k 20, top-p 0.8" in report
    assert "| base model evaluation (baseline) | T=0.7, top-k 20, top-p 0.8" in report
    assert "| training | 8 steps x 4 sequences, max_seq_len 1024" in report
    assert "| decontamination | none requested (data.decontaminate=[]) |" in report
    # generation counts, every drop reason
    assert "| kept for training | 13 |" in report
    assert "| cut at max_tokens (policy) | 6 (keep_open) |" in report
    assert "| of which cut, trained open (no end-of-turn label) | 5 |" in report
    assert "| tokens trained on | the token ids as sampled |" in report
    assert "| ended by the model / cut, trained open | 8 / 5 |" in report
    assert "- filter: `runs/generate/g/filter-1`" in report
    assert "| dropped: empty | 1 |" in report and "| dropped: single_line_stub | 2 |" in report
    assert "| finished (stop / length) | 10 / 6 |" in report
    assert "| sampling time | 50 s (80 tokens/s) |" in report
    assert "| loss at the first / last step | 1.2500 / 0.8750 |" in report
    assert "![training loss per step](loss.png)" in report
    # base vs SSD: overall, labelled difficulties only, and all benchmarks problem-weighted
    assert ("| humaneval | overall | 4 | 25.0% | 50.0% | +25.0 pp | 50.0% | 75.0% | +25.0 pp |"
            in report)
    assert "| lcb_v6 | easy | 2 | 50.0% | 70.0% | +20.0 pp | 100.0% | 100.0% | +0.0 pp |" in report
    assert "| lcb_v6 | hard | 2 |" in report and "| unlabeled |" not in report
    assert ("| all benchmarks | overall | 8 | 25.0% | 45.0% | +20.0 pp | 50.0% | 75.0% | +25.0 pp |"
            in report)
    # the example problem is the one where the two models' first samples disagree
    assert "`HumanEval/1` (humaneval)" in report
    assert "base model, failed: wrong_answer (test 0):" in report and "SSD model, passed:" in report
    assert "````\nHere:\n```python\nprint('```')\n```\n````" in report  # fence can't close early
    assert "Add two numbers." in report and "print(3)" in report
    assert "noise" in report and "not a result" in report
    assert "- evaluate SSD lcb_v6: `runs/evaluate/s2`" in report
    assert "| generate | 50 s | 61 s |" in report and "| train | 300 s | 2 s |" in report


def test_report_states_each_evaluations_problem_set_and_grader() -> None:
    report = build_report(synthetic_records())
    section = report.split("## Evaluation: base vs SSD")[1].split("## Examples")[0]
    assert "| benchmark | model | problem set | definition | problems | ids sha256 | grader |" \
        in section
    for role in ("base", "SSD"):
        assert (f"| lcb_v6 | {role} | lcb_v6 | contest dates 2025-02-01..2025-05-31"
                in section)
        assert (f"| lcb_v6 | {role} | lcb_v6 | {LCB_SET['definition']} | 4 | "
                f"{LCB_SET['id_digest'][:12]} | default |") in section
        assert (f"| humaneval | {role} | humaneval | {HUMANEVAL_SET['definition']} | 4 | "
                f"{HUMANEVAL_SET['id_digest'][:12]} | default |") in section
    assert f"Grader `default`: {DEFAULT_GRADER['summary']}." in section
    assert "Warning" not in report  # base and SSD agree on both benchmarks


def test_report_warns_when_base_and_ssd_differ_in_problem_set_or_grader() -> None:
    records = synthetic_records()
    other = set_record("lcb_v6", LCB_SET["definition"], ["abc387_a", "abc387_b", "3701"])
    lcb_ssd = next(e for e in records.evaluations if (e.benchmark, e.role) == ("lcb_v6", "ssd"))
    lcb_ssd.metrics["problem_set"] = other
    he_ssd = next(e for e in records.evaluations if (e.benchmark, e.role) == ("humaneval", "ssd"))
    he_ssd.metrics["grader"] = {"name": "lcb", "summary": "upstream LiveCodeBench's verdicts"}
    report = build_report(records)
    assert (f"lcb_v6: **Warning:** base and SSD were evaluated on different problem sets (base: "
            f"lcb_v6, 4 problems, ids sha256 {LCB_SET['id_digest'][:12]}; SSD: lcb_v6, 3 "
            f"problems, ids sha256 {other['id_digest'][:12]})") in report
    assert ("humaneval: **Warning:** base and SSD were graded by different grader profiles "
            "(base: default; SSD: lcb)") in report
    # ... and again under the paired bootstrap of the benchmark whose results are there
    paired = report.split("Paired bootstrap, humaneval")[1]
    assert "**Warning:** base and SSD were graded by different grader profiles" in paired
    assert "Grader `lcb`: upstream LiveCodeBench's verdicts." in report
    # an evaluation from before the records carried them: said, not guessed
    del lcb_ssd.metrics["problem_set"], lcb_ssd.metrics["grader"]
    report = build_report(records)
    assert ("cannot check that base and SSD were evaluated on the same problems: no problem "
            "set recorded for SSD") in report
    assert "| lcb_v6 | SSD | – | – | – | – | – |" in report


def test_the_demo_logs_the_paired_comparison_and_the_problem_sets_to_wandb(tmp_path) -> None:
    records = synthetic_records()
    records.stats = {"resamples": 500, "seed": 3, "resample_samples": False}
    out = tmp_path / "demo"
    log_report(OmegaConf.create({"demo": {"logger": "wandb"}}), out, records)
    logged, _ = offline_run(out)
    runs = {e.role: e for e in records.evaluations if e.benchmark == "humaneval"}
    expected = compare(problem_results(runs["base"].results), problem_results(runs["ssd"].results),
                       label_a="base", label_b="SSD", **records.stats).scopes["overall"][1]
    prefix = "demo/humaneval/ssd_minus_base/pass@1"
    assert logged[prefix] == expected.difference.estimate
    assert logged[f"{prefix}/low"] == expected.difference.low
    assert logged[f"{prefix}/high"] == expected.difference.high
    assert logged[f"{prefix}/p"] == expected.p_value
    assert not any(key.startswith("demo/lcb_v6/ssd_minus_base") for key in logged)  # no results
    assert logged["demo/ssd/lcb_v6/pass@5"] == 0.75
    found = {p.name.split("_")[0] for p in out.glob("wandb/offline-run-*/files/media/table/demo/"
                                                     "**/*.table.json")}
    assert {"comparison", "evaluations", "base"} <= found
    [evaluations] = out.glob("wandb/offline-run-*/files/media/table/demo/evaluations_*.table.json")
    table = json.loads(evaluations.read_text())
    assert table["columns"][2:] == ["problem set", "definition", "problems", "ids sha256",
                                    "grader"]
    assert ["lcb_v6", "SSD", "lcb_v6", LCB_SET["definition"], "4", LCB_SET["id_digest"][:12],
            "default"] in table["data"]


def test_report_without_labels_or_losses_says_so() -> None:
    records = synthetic_records()
    records.evaluations = [e for e in records.evaluations if e.benchmark == "humaneval"]
    records.loss, records.loss_image = [], None
    report = build_report(records)
    assert "no per-difficulty rows" in report and "all benchmarks" not in report
    assert "(no loss rows" in report and "![" not in report


def test_pass_rows_leave_out_ks_a_run_did_not_report() -> None:
    base = metrics(0.5, 0.5, 2)
    base["ks"] = [1]
    del base["overall"]["pass@5"]
    rows = pass_rows([EvalRecord("humaneval", "base", base, [], "b"),
                      EvalRecord("humaneval", "ssd", metrics(0.5, 1.0, 2), [], "s")])
    assert rows[0] == ["humaneval", "overall", "2", "50.0%", "50.0%", "+0.0 pp", "–", "100.0%",
                       "–"]


def test_loss_points_keep_the_last_value_logged_for_a_step() -> None:
    text = ("epoch,step,train/grad_norm,train/loss\n0,0,1.0,2.0\n0,1,1.0,1.5\n0,2,1.0,\n"
            "0,1,1.0,1.25\n0,2,1.0,1.0\n")  # a resumed run logs step 1 again
    assert loss_points(text) == [(0, 2.0), (1, 1.25), (2, 1.0)]
    assert loss_points("epoch,step\n") == []


def test_fence_clip_and_example_choice() -> None:
    assert fence("a") == "```\na\n```"
    assert fence("x ```` y", "python").startswith("`````python\n")
    long = "\n".join(f"line {i}" for i in range(100))
    clipped = clip(long, max_lines=3)
    assert clipped.startswith("line 0\nline 1\nline 2\n… [truncated: ")
    assert clip("short") == "short"
    both_fail = [result("a", 0, False), result("b", 0, False)]
    assert pick_example(both_fail, both_fail)[0]["question_id"] == "a"
    assert pick_example([result("a", 1, True), result("a", 0, False)], both_fail)[0] == \
        result("a", 0, False)
    assert pick_example(both_fail, [result("b", 0, True)])[1]["question_id"] == "b"
    assert pick_example([result("a", 0, True)], [result("b", 0, True)]) is None


# -- the stages the demo runs (pure, plus Hydra composition) --------------------------------------
# The configs each stage composed to with the demo's own override builders, recorded before the
# demo's chain became a declared study (conf/study/demo.yaml): the same configs, the same stage
# identities, the same numbers.
RECORDED = json.loads((REPO / "tests" / "fixtures" / "demo_stage_configs.json").read_text())


def composed_chain(cfg) -> dict[str, dict]:
    return composed_stages(chain(cfg))


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_the_declared_chain_composes_each_stage_as_the_demo_did_before(case: str) -> None:
    recorded = RECORDED[case]
    found = composed_chain(compose("demo", recorded["overrides"]))
    assert sorted(found) == sorted(recorded["stages"])  # the same stages (order: the e2e test)
    for name, config in found.items():
        assert config == recorded["stages"][name], name


def test_stage_sizes_follow_the_scale_and_compose_to_the_recipe() -> None:
    cfg = compose("demo", ["demo.scale=2"])
    s = sizes(cfg)
    assert (s.prompts, s.steps, s.problems, s.warmup_steps, s.save_every_n_steps) == (48, 16, 8, 2,
                                                                                      8)
    found = composed_chain(cfg)
    gen, train = found["generate"], found["train"]
    assert gen["model"]["path"] == "builtin:smollm2-135m" and gen["data"]["limit"] == 48
    assert (gen["decoding"]["T"], gen["truncation"]["top_k"], gen["truncation"]["top_p"]) == (
        1.6, 20, 0.8)
    assert train["trainer"]["max_steps"] == 16 and train["trainer"]["global_batch_size"] == 4
    assert train["logger"]["wandb"]["mode"] == "offline"  # W&B offline by default
    base, ssd = found["evaluate base humaneval"], found["evaluate ssd humaneval"]
    assert (base["decoding"]["T"], ssd["decoding"]["T"]) == (base["recipe"]["baseline"]["T"],
                                                             ssd["recipe"]["evaluation"]["T"])
    assert ssd["model"]["path"] == "runs/t/hf/final"
    for e in (base, ssd):
        assert (e["eval"]["name"], e["eval"]["limit"], e["eval"]["n"]) == ("humaneval", 8, 5)


def test_the_default_demo_fits_in_twenty_minutes_at_the_measured_rates() -> None:
    estimate = estimate_seconds(compose("demo", []))
    assert sum(estimate.values()) <= 0.9 * 20 * 60
    assert sum(estimate_seconds(compose("demo", ["demo.scale=2"])).values()) > sum(
        estimate.values())


def test_model_keys_changed_on_the_demo_command_line_reach_every_stage() -> None:
    assert model_overrides({"name": "tiny", "path": "builtin:tiny"},
                           {"name": "tiny", "path": "builtin:tiny"}) == ["model=tiny"]
    assert model_overrides({"name": "tiny", "path": "Org/m", "dtype": "bfloat16"},
                           {"name": "tiny", "path": "builtin:tiny", "dtype": "float32"}) == [
        "model=tiny", "model.path=Org/m", "model.dtype=bfloat16"]
    cfg = compose("demo", ["model=tiny", "model.dtype=bfloat16"])
    assert all(c["model"]["dtype"] == "bfloat16" for c in composed_chain(cfg).values())
    assert override_value("a b'c") == "'a b\\'c'" and override_value(None) == "null"
    runner = chain(cfg)
    train = next(spec for spec in runner.specs if spec.script == "train")
    fed = [f"data.samples={override_value('runs/x y/train.jsonl')}"]
    assert compose_stage("train", runner.overrides(train, fed)).data.samples == \
        "runs/x y/train.jsonl"


@pytest.mark.parametrize(("override", "message"), [
    ("demo.scale=0", r"^demo\.scale=0: must be > 0"),
    ("demo.train.steps=0", r"^demo\.train\.steps=0: must be an integer >= 1"),
    ("demo.evaluate.benchmarks=[nope]", r"^demo\.evaluate\.benchmarks=\['nope'\]: must be a "
                                        r"non-empty list of distinct conf/eval presets"),
    ("demo.generate.data=sft", r"^demo\.generate\.data=sft: must be a conf/data prompt pool"),
    ("demo.logger=csv", r"^demo\.logger=csv: must be one of"),
    ("demo.extra.train=oops", r"^demo\.extra\.train=oops: must be a list of Hydra overrides"),
])
def test_bad_demo_values_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_demo(compose("demo", [override]))


def test_bad_value_on_the_command_line_is_one_line_and_status_2(tmp_path: Path) -> None:
    assert cli_error("demo", ["demo.evaluate.n=0"], tmp_path) == [
        "error: demo.evaluate.n=0: must be an integer >= 1"]
    assert not (tmp_path / "runs").exists()


def test_a_bad_stage_override_fails_before_any_stage_starts(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "demo.py"), "model=tiny",
                             'demo.extra.generate=["decoding.T=0"]'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: decoding.T=0: must be > 0 (temperature; 1.0 samples from the model as is)"]
    assert not (tmp_path / "runs" / "generate").exists()


def test_a_stage_killed_by_a_signal_gives_the_shell_status() -> None:
    assert StageFailed("x", -9).returncode == 137
    assert StageFailed("x", 2).returncode == 2 and StageFailed("x", 0).returncode == 1


# -- end to end on the tiny model -----------------------------------------------------------------
# Small enough for seconds per stage; one benchmark (shipped with the tests) keeps it to four
# stage processes.
TINY = ["demo.part=chain", "model=tiny", "demo.generate.prompts=8", "demo.generate.max_tokens=48",
        "demo.train.steps=4", "demo.train.global_batch_size=2", "demo.train.max_seq_len=512",
        "demo.evaluate.problems=2", "demo.evaluate.max_tokens=16",
        "demo.evaluate.benchmarks=[lcb_sample]", "demo.engine.enforce_eager=true",
        'demo.extra.generate=["progress=false"]', 'demo.extra.train=["progress=false"]',
        'demo.extra.evaluate=["progress=false"]']


@dataclass
class Resumed:
    workspace: Path
    samples_before: os.stat_result   # generate's samples.jsonl when the demo was killed
    stdout: str                      # the rerun's output
    dirs: dict[str, Path]            # the stage directories, as the driver computes them
    stderr: str = ""


def demo_command() -> list[str]:
    return [sys.executable, str(REPO / "demo.py"), *TINY]


def run_demo(workspace: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(demo_command(), cwd=workspace, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def stage_dirs(workspace: Path, extra: list[str] = ()) -> dict[str, Path]:
    """Where the driver will find each stage's outputs (relative run dirs, in ``workspace``):
    generation's and the base evaluation's at once, training's once its training set exists."""
    cfg = compose("demo", [*TINY, *extra])
    cwd = Path.cwd()
    os.chdir(workspace)  # the training set's path is relative to the workspace
    try:
        runner = chain(cfg)
        steps = {step.spec.name: step for step in runner.plan()}
    finally:
        os.chdir(cwd)
    train_set = runner.generated["generate"][1]
    dirs = {"generate": workspace / steps["generate"].runs[0].run_dir,
            "filter": workspace / train_set.parent,
            "base": workspace / steps["evaluate base lcb_sample"].runs[0].run_dir}
    if steps["train"].runs:  # planned once its training set exists
        dirs["train"] = Path(steps["train"].runs[0].run_dir)
    return dirs


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Resumed:
    """The demo killed (whole process group, SIGKILL) once train.py has claimed its run
    directory, then the same command again, to the end."""
    workspace = tmp_path_factory.mktemp("demo")
    log = open(workspace / "killed.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(demo_command(), cwd=workspace, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while (not list(workspace.glob("runs/train/*/*/identity.json")) and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    assert process.poll() is None, (workspace / "killed.log").read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)  # demo.py, train.py, torchrun and the rank at once
    process.wait()
    log.close()
    dirs = stage_dirs(workspace)
    assert (dirs["generate"] / "run.json").exists() and not (dirs["train"] / "run.json").exists()
    samples_before = (dirs["generate"] / "samples.jsonl").stat()
    rerun = run_demo(workspace)
    return Resumed(workspace, samples_before, rerun.stdout, dirs, rerun.stderr)


@pytest.mark.slow
def test_killed_demo_resumes_without_redoing_generation(resumed: Resumed) -> None:
    samples = (resumed.dirs["generate"] / "samples.jsonl").stat()
    assert (samples.st_ino, samples.st_mtime_ns, samples.st_size) == (
        resumed.samples_before.st_ino, resumed.samples_before.st_mtime_ns,
        resumed.samples_before.st_size)
    assert "generate: complete, reused" in resumed.stdout
    # train.py resumed under the stage lock the killed demo left behind (its owner is gone)
    assert "train: took over a stale lock (its owner" in resumed.stdout
    assert len(computations(resumed.dirs["generate"])) == 1
    assert [c["resumed"] for c in computations(resumed.dirs["train"])] == [True]
    # the stage's own output is in its log, the console has one line per stage and the headline
    assert "train: done; HF export" in (resumed.dirs["train"] / "train.log").read_text()
    console = resumed.stdout.splitlines() + resumed.stderr.splitlines()
    assert len(console) <= 20, console
    assert "demo [3/5] train: done in" in resumed.stdout
    assert "demo: lcb_sample: pass@1 base " in resumed.stdout
    assert json.loads((resumed.dirs["train"] / "run.json").read_text())["status"] == "complete"
    assert (resumed.dirs["train"] / "hf" / "final" / "config.json").exists()


@pytest.mark.slow
def test_demo_writes_the_report_and_a_rerun_reuses_every_stage(resumed: Resumed) -> None:
    demo_dirs = list((resumed.workspace / "runs" / "demo" / "tiny").iterdir())
    assert len(demo_dirs) == 1
    out = demo_dirs[0]
    report = (out / "report.md").read_text()
    for heading in ("## Settings", "## Generation", "## Training", "## Evaluation: base vs SSD",
                    "## Examples", "## What this can and cannot show"):
        assert heading in report
    assert "| benchmark | subset | problems | base pass@1 | SSD pass@1 | change |" in report
    assert "| lcb_sample | overall | 2 |" in report
    assert "![training loss per step](loss.png)" in report
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = json.loads((out / "stages.json").read_text())
    run_dirs = [resumed.workspace / s["run_dir"] for s in state["stages"]]
    names = ["generate", "filter", "train", "evaluate base lcb_sample", "evaluate ssd lcb_sample"]
    assert [s["name"] for s in state["stages"]] == names
    assert run_dirs[:4] == [resumed.dirs[k] for k in ("generate", "filter", "train", "base")]
    outputs = [run_dirs[0] / "samples.jsonl", run_dirs[1] / "train.jsonl", run_dirs[2] / "run.json",
               run_dirs[3] / "metrics.json", run_dirs[4] / "metrics.json"]
    before = [p.stat().st_mtime_ns for p in outputs]

    again = run_demo(resumed.workspace).stdout
    for name in names:
        assert f"{name}: complete, reused" in again
    assert again.count("complete, reused") == 5 and ": done in" not in again
    # every stage computed once (the filter as part of the generate stage's run)
    assert [len(computations(d)) for d in run_dirs] == [1, 0, 1, 1, 1]
    assert [p.stat().st_mtime_ns for p in outputs] == before
    assert (out / "report.md").read_text().split("## Time")[0] == report.split("## Time")[0]


def newest_wandb_summary(run_dir: Path) -> dict:
    """The final summary of the newest offline W&B run under ``run_dir/wandb`` (a stage killed
    and resumed logs a second offline run with the same run id)."""
    logs = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    assert logs, f"no offline W&B run in {run_dir}"
    summary: dict = {}
    for record in wandb_records(logs[-1]):
        if record.WhichOneof("record_type") == "summary":
            # Lightning's WandbLogger sends its keys as nested_key, the stages' own as key
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in record.summary.update})
    return summary


@pytest.mark.slow
def test_every_demo_stage_and_the_report_log_an_offline_wandb_run(resumed: Resumed) -> None:
    state = json.loads(next((resumed.workspace / "runs" / "demo").rglob("stages.json")).read_text())
    prefixes = {"generate": "generate/", "filter": "generate/kept", "train": "train/loss",
                "evaluate base lcb_sample": "eval/pass@1",
                "evaluate ssd lcb_sample": "eval/pass@1"}
    for stage in state["stages"]:
        run_dir = resumed.workspace / stage["run_dir"]
        # the filter step logs into its generate run's W&B run
        summary = newest_wandb_summary(run_dir.parent if stage["name"] == "filter" else run_dir)
        assert any(key.startswith(prefixes[stage["name"]]) for key in summary), stage["name"]
    demo = newest_wandb_summary(resumed.workspace / state["demo_dir"])
    assert {"demo/base/lcb_sample/pass@1", "demo/ssd/lcb_sample/pass@5",
            "demo/lcb_sample/ssd_minus_base/pass@1",
            "demo/lcb_sample/ssd_minus_base/pass@1/p"} <= set(demo)


def test_the_report_states_the_pools_decontamination() -> None:
    record = {"sets": ["lcb_v6"], "checked": 64, "overlapping": 2, "shares_any_ngram": 35}
    assert decontamination_cell(record) == (
        "64 prompts checked against lcb_v6: 2 overlapping dropped (35 share any 8-gram)")


def test_the_generation_section_shows_the_diagnostics_or_dashes_for_an_older_run() -> None:
    records = synthetic_records()
    older = build_report(records)  # a generate run.json from before the diagnostics
    assert "| with an extractable code block | – |" in older
    assert "| mean completion tokens | – |" in older and "A sample of median length" not in older
    records.generate["diagnostics"] = {
        "samples": 16, "code_block": 0.375, "parses": 0.25, "cut": 0.375, "mixed_script": 0.0625,
        "non_ascii": 0.002, "mean_completion_tokens": 250.0,
        "representative": {"prompt_id": "p7", "sample_index": 0, "completion_tokens": 240,
                           "finish_reason": "stop", "completion": "```python\nprint(7)\n```",
                           "clipped_chars": 0}}
    report = build_report(records)
    assert "| with an extractable code block | 37.5% |" in report
    assert "| whose code block parses as Python | 25.0% |" in report
    assert "| mixed-script (letters of several scripts) | 6.2% |" in report
    assert "| non-ASCII characters (of all sampled text) | 0.2% |" in report
    assert "| mean completion tokens | 250 |" in report
    assert ("A sample of median length (240 tokens, finish reason stop; prompt `p7`, sample 0):"
            "\n\n````\n```python\nprint(7)\n```\n````") in report
