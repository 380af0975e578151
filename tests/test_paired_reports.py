"""Where base-vs-SSD comparisons are shown: the evaluate sweep summary and the grid report read
each evaluation's results.jsonl and show bootstrap intervals and paired comparisons
(ssd/bootstrap.py) made with the stats group's resamples and seed; both state each evaluation's
problem set (name, definition, count, id digest) and grader, and warn where a comparison is
between two problem sets or two graders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ssd.bootstrap import compare, passk_intervals, problem_results
from ssd.config import ConfigError, stats_options
from ssd.evaluation.problem_sets import set_record
from ssd.evaluation.sweep import write_sweep_summary
from ssd.pipeline.grid_report import write_grid_report
from tests.conftest import REPO, compose
from tests.test_launcher import offline_run

LEVELS = ("easy", "medium", "hard")
STATS = {"resamples": 800, "seed": 4, "resample_samples": False}
SAMPLE_SET = set_record("lcb_sample", "every problem of lcb_sample.jsonl",
                        [f"q{j}" for j in range(30)])
DEFAULT = {"name": "default",
           "summary": "the project's own semantics (LiveCodeBench's rules where sound)"}
ML_SSD = {"name": "ml_ssd",
          "summary": "the paper's released evaluator (apple/ml-ssd livecodebench_utils.py)"}
STATED = (f"problem set lcb_sample (every problem of lcb_sample.jsonl): 30 problems, ids sha256 "
          f"{SAMPLE_SET['id_digest'][:12]}; grader default, the project's own semantics "
          "(LiveCodeBench's rules where sound)")


def write_results(run_dir: Path, rate: float, seed: int, problems: int = 30, n: int = 6) -> Path:
    """An evaluate run directory's results.jsonl: ``problems`` problems x ``n`` samples, each
    passing with a per-problem probability around ``rate``."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    lines = []
    for j in range(problems):
        p = float(np.clip(rate + rng.normal(0, 0.2), 0, 1))
        for i in range(n):
            lines.append(json.dumps({"question_id": f"q{j}", "sample_index": i,
                                     "difficulty": LEVELS[j % 3], "passed": bool(rng.random() < p),
                                     "reason": "ok"}))
    (run_dir / "results.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def metrics_of(run_dir: Path, model: str, t: float) -> dict:
    """The metrics.json evaluate.py publishes into its Hydra job folder, for ``run_dir``."""
    results = problem_results(json.loads(line) for line in
                              (run_dir / "results.jsonl").read_text().splitlines())
    p1 = float(np.mean([r.c / r.n for r in results]))
    return {"t_eval": t, "model": model, "model_name": "m", "eval": {"name": "lcb_sample"},
            "ks": [1, 5], "pass@1": p1, "pass@5": p1, "per_difficulty": {}, "n": 6,
            "truncation": {"top_k": 20, "top_p": 0.8}, "problems": 30, "samples": 180,
            "overrides": [f"model.path={model}", f"decoding.T={t}"], "run_dir": str(run_dir),
            "problem_set": SAMPLE_SET, "grader": DEFAULT}


def read(run_dir: Path):
    return problem_results(json.loads(line) for line in
                           (run_dir / "results.jsonl").read_text().splitlines())


def test_the_sweep_summary_pairs_each_model_with_the_first_at_the_same_settings(tmp_path):
    sweep = tmp_path / "sweep"
    runs = {}
    for number, (model, t, rate) in enumerate([("base", 0.6, 0.3), ("base", 1.0, 0.35),
                                               ("ssd", 0.6, 0.5), ("ssd", 1.0, 0.55)]):
        runs[(model, t)] = write_results(tmp_path / "runs" / f"{model}-{t}", rate, number)
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(
            json.dumps(metrics_of(runs[(model, t)], model, t)))
    summary = write_sweep_summary(sweep, STATS)
    assert summary is not None

    # Every job's pass@k with its interval: the bootstrap of its own results.
    row = next(r for r in summary["rows"] if r["job"] == "0")
    own = passk_intervals(read(runs[("base", 0.6)]), ks=[1, 5], **STATS)["overall"]
    assert row["pass@1 95% CI"] == [own[1].low, own[1].high]
    assert row["pass@5 95% CI"] == [own[5].low, own[5].high]

    # The SSD jobs against the base job at the same T (never across temperatures).
    pairs = {(c["reference_job"], c["job"]) for c in summary["comparisons"]}
    assert pairs == {("0", "2"), ("1", "3")}
    found = next(c for c in summary["comparisons"] if c["job"] == "3")["comparison"]
    expected = compare(read(runs[("base", 1.0)]), read(runs[("ssd", 1.0)]), label_a="base",
                       label_b="ssd", **STATS).to_dict()
    assert found == expected
    assert found["scopes"]["overall"]["pass@1"]["difference"]["estimate"] > 0.1
    assert list(found["scopes"]) == ["overall", *LEVELS]
    markdown = (sweep / "summary.md").read_text()
    assert "## Paired comparisons with the sweep's first model" in markdown
    assert "### job 3 against job 1" in markdown and "| ssd - base [95% CI] |" in markdown
    assert "800 resamples, seed 4" in markdown
    # What every job is about, stated once above the table (all four share it).
    assert markdown.startswith(f"# evaluate sweep: 4 jobs\n\nEvery job (4): {STATED}.\n")
    [stamp] = summary["stamps"]
    assert stamp["problem_set"] == SAMPLE_SET and stamp["grader"] == DEFAULT
    assert stamp["evaluations"] == ["job 0", "job 1", "job 2", "job 3"]
    assert all(c["stamp_differences"] == [] for c in summary["comparisons"])
    assert "Warning" not in markdown and "| grader |" not in markdown


def test_the_sweep_summary_warns_when_paired_jobs_differ_in_problem_set_or_grader(tmp_path):
    sweep = tmp_path / "sweep"
    fewer = set_record("lcb_sample", "every problem of lcb_sample.jsonl, the first 29 in file "
                       "order", [f"q{j}" for j in range(29)])
    for number, (model, t, rate) in enumerate([("base", 0.6, 0.3), ("base", 1.0, 0.35),
                                               ("ssd", 0.6, 0.5), ("ssd", 1.0, 0.55)]):
        record = metrics_of(write_results(tmp_path / "runs" / f"{model}-{t}", rate, number),
                            model, t)
        if number == 2:
            record["grader"] = ML_SSD
        if number == 3:
            record["problem_set"] = fewer
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(json.dumps(record))
    summary = write_sweep_summary(sweep, STATS)
    found = {c["job"]: c["stamp_differences"] for c in summary["comparisons"]}
    assert found["2"] == ["job 0 and job 2 were graded by different grader profiles (job 0: "
                          "default; job 2: ml_ssd)"]
    assert found["3"] == [f"job 1 and job 3 were evaluated on different problem sets (job 1: "
                          f"lcb_sample, 30 problems, ids sha256 {SAMPLE_SET['id_digest'][:12]}; "
                          f"job 3: lcb_sample, 29 problems, ids sha256 "
                          f"{fewer['id_digest'][:12]})"]
    markdown = (sweep / "summary.md").read_text()
    assert "**The jobs do not share one problem set and grader:**" in markdown
    assert f"- {STATED}; jobs: job 0, job 1" in markdown
    assert f"ids sha256 {fewer['id_digest'][:12]}; grader default" in markdown
    assert "grader ml_ssd, the paper's released evaluator" in markdown
    section = markdown.split("### job 2 against job 0")[1].split("###")[0]
    assert "**Warning:** job 0 and job 2 were graded by different grader profiles" in section
    # ... and each row says its own, in columns the table only has when the jobs differ
    assert summary["columns"][-3:] == ["problem set", "ids sha256", "grader"]
    row = next(r for r in summary["rows"] if r["job"] == "3")
    assert (row["problem set"], row["ids sha256"], row["grader"]) == (
        "lcb_sample", fewer["id_digest"][:12], "default")


def test_one_model_sweep_has_intervals_and_no_comparison(tmp_path):
    sweep = tmp_path / "sweep"
    for number, t in enumerate((0.6, 1.0)):
        run = write_results(tmp_path / "runs" / str(t), 0.4, number)
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "metrics.json").write_text(json.dumps(metrics_of(run, "base", t)))
    summary = write_sweep_summary(sweep, STATS)
    assert summary["comparisons"] == []
    assert all(len(r["pass@1 95% CI"]) == 2 for r in summary["rows"])
    assert "Paired comparisons" not in (sweep / "summary.md").read_text()


def grid_cell(tmp_path: Path, t_train: float, t_eval: float, rate: float, base_rate: float,
              seed: int) -> dict:
    def evaluation(run_dir: Path, p1: float) -> dict:
        return {"ks": [1, 5], "overall": {"pass@1": p1, "pass@5": p1},
                "per_difficulty": {}, "problems": 30, "samples": 180, "run_dir": str(run_dir),
                "problem_set": SAMPLE_SET, "grader": DEFAULT}

    ssd = write_results(tmp_path / "runs" / f"ssd-{t_train}-{t_eval}", rate, seed)
    base_dir = tmp_path / "runs" / f"base-{t_eval}"
    base = base_dir if base_dir.exists() else write_results(base_dir, base_rate, 100 + seed)
    return {"t_train": t_train, "truncation": "none", "t_eval": t_eval,
            "eval_truncation": "evaluation", "benchmark": "lcb_sample", "model": "m",
            "checkpoints": "last", "base": evaluation(base, base_rate),
            "evaluations": [{"checkpoint": "final", "step": 4, **evaluation(ssd, rate)}]}


def test_the_grid_report_compares_the_best_cell_and_each_cell_with_the_base_model(tmp_path):
    sweep = tmp_path / "sweep"
    cells = [grid_cell(tmp_path, t_train, t_eval, rate, base, seed) for seed, (t_train, t_eval,
             rate, base) in enumerate([(1.0, 0.6, 0.45, 0.3), (1.0, 1.0, 0.6, 0.35),
                                       (2.0, 0.6, 0.35, 0.3), (2.0, 1.0, 0.4, 0.35)])]
    for number, cell in enumerate(cells):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "cell.json").write_text(json.dumps(cell))
    logger = {"wandb": {"project": "ssd", "entity": None, "mode": "offline", "group": None},
              "csv": True}
    write_grid_report(sweep, OmegaConf.create({"logger": logger, "stats": STATS}))
    summary = json.loads((sweep / "grid.json").read_text())

    # The best cell (T_train 1, T_eval 1) against the base model's best decode-only setting.
    best_dir, base_dir = tmp_path / "runs" / "ssd-1.0-1.0", tmp_path / "runs" / "base-1.0"
    expected = compare(read(base_dir), read(best_dir), label_a="base", label_b="SSD", **STATS)
    assert summary["comparison"] == json.loads(json.dumps(expected.to_dict()))
    # Each cell against the base model at its own T_eval.
    at = {(c["t_train"], c["t_eval"]): c["comparison"] for c in summary["comparisons_with_base"]}
    assert set(at) == {(1.0, 0.6), (1.0, 1.0), (2.0, 0.6), (2.0, 1.0)}
    assert at[(2.0, 0.6)]["label_a"] == "base" and at[(1.0, 1.0)] == summary["comparison"]
    row = next(r for r in summary["rows"] if (r["t_train"], r["t_eval"]) == (2.0, 0.6))
    own = passk_intervals(read(tmp_path / "runs" / "ssd-2.0-0.6"), **STATS)["overall"]
    assert row["pass@1_ci"] == [own[1].low, own[1].high]

    markdown = (sweep / "grid.md").read_text()
    assert "## Each trained model against the base model at the same T_eval" in markdown
    assert "| SSD - base [95% CI] | p |" in markdown and "optimistic about the gap" in markdown
    # W&B: the difference, its interval and p-value as scalars, the comparison as a table.
    assert list(sweep.glob("wandb/offline-run-*/files/media/table/grid/comparison_*.table.json"))
    logged, _ = offline_run(sweep)
    overall = expected.scopes["overall"][1]
    assert logged["grid/ssd_minus_base/pass@1/low"] == overall.difference.low
    assert logged["grid/ssd_minus_base/pass@1/p"] == overall.p_value

    # The problem set and grader of every evaluation (4 SSD cells, 2 base settings), stated once.
    assert f"Every evaluation (6): {STATED}." in markdown
    [stamp] = summary["stamps"]
    assert stamp["problem_set"] == SAMPLE_SET and stamp["grader"] == DEFAULT
    assert len(stamp["evaluations"]) == 6 and "Warning" not in markdown
    assert summary["best_vs_base_stamp_differences"] == []
    [table] = sweep.glob("wandb/offline-run-*/files/media/table/grid/problem_sets_*.table.json")
    assert json.loads(table.read_text())["data"] == [
        ["lcb_sample", "every problem of lcb_sample.jsonl", "30", SAMPLE_SET["id_digest"][:12],
         "default", 6]]


def test_the_grid_report_warns_when_base_and_ssd_differ_and_reads_older_cells_stamps(
        tmp_path):
    sweep = tmp_path / "sweep"
    cells = [grid_cell(tmp_path, 1.0, t_eval, rate, base, seed) for seed, (t_eval, rate, base)
             in enumerate([(0.6, 0.45, 0.3), (1.0, 0.6, 0.35)])]
    cells[1]["evaluations"][0]["grader"] = ML_SSD  # the best cell, graded by another profile
    # A cell.json from before cells recorded them: the base evaluation's metrics.json has them.
    base = cells[0]["base"]
    del base["problem_set"], base["grader"]
    fewer = set_record("lcb_sample", "every problem of lcb_sample.jsonl, the first 29 in file "
                       "order", [f"q{j}" for j in range(29)])
    (Path(base["run_dir"]) / "metrics.json").write_text(
        json.dumps({"problem_set": fewer, "grader": DEFAULT}))
    for number, cell in enumerate(cells):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "cell.json").write_text(json.dumps(cell))
    write_grid_report(sweep, OmegaConf.create({"logger": {"wandb": None, "csv": False},
                                               "stats": STATS}))
    summary = json.loads((sweep / "grid.json").read_text())
    markdown = (sweep / "grid.md").read_text()

    assert "**The evaluations do not share one problem set and grader:**" in markdown
    assert (f"- problem set lcb_sample (every problem of lcb_sample.jsonl, the first 29 in file "
            f"order): 29 problems, ids sha256 {fewer['id_digest'][:12]}; grader default") \
        in markdown
    assert "grader ml_ssd, the paper's released evaluator" in markdown
    # The headline: the best cell (T_eval 1.0, ml_ssd) against the base model's best (T_eval 1.0)
    assert summary["best_vs_base_stamp_differences"] == [
        "base and SSD were graded by different grader profiles (base: default; SSD: ml_ssd)"]
    headline = markdown.split("## Best cell")[1].split("## Each trained model")[0]
    assert "**Warning:** base and SSD were graded by different grader profiles" in headline
    at = {c["t_eval"]: c["stamp_differences"] for c in summary["comparisons_with_base"]}
    assert at[0.6] == [f"base and SSD were evaluated on different problem sets (base: lcb_sample, "
                       f"29 problems, ids sha256 {fewer['id_digest'][:12]}; SSD: lcb_sample, 30 "
                       f"problems, ids sha256 {SAMPLE_SET['id_digest'][:12]})"]
    assert "- T_train 1, none, T_eval 0.6: **Warning:** base and SSD were evaluated on " \
        "different problem sets" in markdown
    # Every evaluation's row names its own, since they differ.
    every = markdown.split("## Every evaluation")[1]
    assert f"| lcb_sample | {SAMPLE_SET['id_digest'][:12]} | ml_ssd |" in every
    assert f"| lcb_sample | {fewer['id_digest'][:12]} | default |" in every


def test_the_stats_group_is_checked_with_one_line():
    assert stats_options(compose("evaluate", [])) == {"resamples": 10000, "seed": 0,
                                                      "resample_samples": False}
    assert stats_options(compose("pipeline", ["stats.resamples=500"]))["resamples"] == 500
    for override, message in [("stats.resamples=0", "stats.resamples=0: must be an integer >= 1"),
                              ("stats.seed=x", "stats.seed=x: must be an integer"),
                              ("stats.resample_samples=2", "stats.resample_samples=2: must be")]:
        try:
            stats_options(compose("evaluate", [override]))
        except ConfigError as error:
            assert str(error).startswith(message) and "\n" not in str(error)
        else:
            raise AssertionError(f"{override} was accepted")


def test_a_real_evaluate_sweep_over_two_models_compares_them(tmp_path):
    """evaluate.py -m over two completion files of the official-format fixture (no engine): the
    Hydra callback's summary pairs the second with the first, from their results.jsonl files."""
    solutions = json.loads((REPO / "tests/fixtures/lcb/solutions.json").read_text())["official"]
    files = {}
    for name, correct in (("base", 1), ("ssd", 4)):  # correct samples of 5, per problem
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(
            json.dumps({"question_id": qid, "sample_index": i, "completion":
                        f"```python\n{programs['correct' if i < correct else 'mutant']}\n```"})
            + "\n" for qid, programs in solutions.items() for i in range(5)))
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "-m", "eval=lcb_v6",
         f"eval.path={REPO / 'tests/fixtures/lcb/official_sample.jsonl'}",
         "eval.problem_set=null", "logger=none", "progress=false", "eval.workers=2",
         f"eval.completions={files['base']},{files['ssd']}", "stats.resamples=1000",
         f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    [item] = summary["comparisons"]
    comparison = item["comparison"]
    assert comparison["label_a"] == f"completions {files['base']}"
    jobs = {r["job"]: r for r in summary["rows"]}
    d = comparison["scopes"]["overall"]["pass@1"]
    assert d["difference"]["estimate"] == pytest.approx(
        jobs[item["job"]]["pass@1"] - jobs[item["reference_job"]]["pass@1"])
    assert d["difference"]["estimate"] > 0.3 and comparison["resamples"] == 1000
    assert set(comparison["scopes"]) == {"overall", "easy", "medium", "hard"}
    # Both jobs' own records: one problem set (the fixture's every problem) and the default grader
    [stamp] = summary["stamps"]
    ids = [json.loads(line)["question_id"] for line in
           (REPO / "tests/fixtures/lcb/official_sample.jsonl").read_text().splitlines()]
    assert stamp["problem_set"]["problems"] == len(ids) and stamp["grader"]["name"] == "default"
    assert stamp["problem_set"]["id_digest"] == set_record("", "", ids)["id_digest"]
    markdown = (sweep / "summary.md").read_text()
    assert (f"Every job (2): problem set {stamp['problem_set']['name']} "
            f"({stamp['problem_set']['definition']}): {len(ids)} problems, ids sha256 "
            f"{stamp['problem_set']['id_digest'][:12]}; grader default, the project's own") \
        in markdown
    assert item["stamp_differences"] == [] and "Warning" not in markdown
