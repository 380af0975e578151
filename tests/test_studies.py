"""study.py: declared stages read and checked (pure), the reports' tables on planted numbers, and
the main, stress and paper studies end to end on the tiny model (real stage processes): the plan
lists every stage without running one, a study writes its report, a second run computes nothing,
and the paper view collects what the runs directory holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssd.bootstrap import compare
from ssd.config import ConfigError
from ssd.passk import ProblemResult
from ssd.pipeline.stages import COMPUTATIONS_FILE, checkpoint_selection
from ssd.studies.main_report import best_point, margins, table2
from ssd.studies.paper_numbers import PAPER_TABLE2
from ssd.studies.results import EvalRun
from ssd.studies.runner import study_specs
from ssd.studies.spec import read_stages
from ssd.studies.stress_report import grid_cells, ridge
from tests.conftest import REPO, cli_error, compose

# -- declared stages (pure) ---------------------------------------------------------------------
CHAIN = {"generate": {"script": "generate", "overrides": ["decoding.T=2.0"]},
         "train": {"script": "train", "samples": "generate"}}


def test_each_expands_a_stage_per_value_and_fills_its_overrides() -> None:
    specs = read_stages({**CHAIN, "ssd": {
        "script": "evaluate", "model": "train", "role": "ssd", "checkpoints": "every_2",
        "each": {"benchmark": ["lcb_v6", "lcb_v5"]},
        "sweep": {"decoding.T": [0.6, 0.9]}, "overrides": ["eval={benchmark}"]}},
        checkpoint_selection)
    assert [s.name for s in specs] == ["generate", "train", "ssd lcb_v6", "ssd lcb_v5"]
    v6 = specs[2]
    assert v6.overrides == ("eval=lcb_v6",) and v6.labels == {"benchmark": "lcb_v6"}
    assert (v6.model, v6.checkpoints, v6.sweep) == ("train", "every_2", ("decoding.T", (0.6, 0.9)))
    assert specs[1].samples == "generate" and specs[1].overrides == ()


@pytest.mark.parametrize(("stages", "message"), [
    ({}, "study.stages: must declare at least one stage"),
    ({"g": {"script": "sample"}}, r"study.stages.g.script=sample: must be one of generate"),
    ({"g": {"script": "generate", "seed": 1}}, r"study.stages.g.seed: not a stage field"),
    ({"t": {"script": "train", "samples": "g"}}, r"samples=g: must name a generate stage "
                                                 "declared above it: none declared yet"),
    ({"t": {"script": "train"}}, "a train stage needs the generate stage"),
    ({**CHAIN, "e": {"script": "evaluate", "model": "generate"}},
     r"model=generate: must name a train stage declared above it: train"),
    ({**CHAIN, "e": {"script": "evaluate", "checkpoints": "all"}},
     "only an evaluate stage with a model selects checkpoints"),
    ({**CHAIN, "e": {"script": "evaluate", "model": "train", "checkpoints": "best"}},
     r"checkpoints=best: must be last, all, every_<k> \(k >= 1\) or best_of:<stage>"),
    ({**CHAIN, "e": {"script": "evaluate", "sweep": {"decoding.T": [0.6, 0.6]}}},
     "one key with a list of distinct values"),
    ({"g": {"script": "generate", "sweep": {"decoding.T": [1.0]}}},
     "only an evaluate stage sweeps"),
    ({"g": {"script": "generate", "overrides": "decoding.T=1"}}, "must be a list of Hydra"),
    ({"e": {"script": "evaluate", "overrides": ["eval={set}"], "each": {"benchmark": ["a"]}}},
     r"names a placeholder 'set'"),
    ({"e": {"script": "evaluate", "each": {"benchmark": []}}}, "non-empty lists"),
])
def test_bad_declarations_are_one_line_naming_the_key(stages: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_stages(stages, checkpoint_selection)


def test_a_bad_study_value_on_the_command_line_is_one_line_and_status_2(tmp_path: Path) -> None:
    assert cli_error("study", ["model=tiny", "study.checkpoints=all"], tmp_path) == [
        "error: study.checkpoints=all: the main study reports one checkpoint: last (the final "
        "one) or best_of:select (the best on study.select_on, a set apart from the reported ones)"]
    assert cli_error("study", ["model=tiny", "study.checkpoints=best_of:select"], tmp_path)[0] \
        .endswith("the main study's select stage is enabled by study.select_on=<eval preset>")
    assert cli_error("study", ["study=paper", "+study.stages.g.script=generate"], tmp_path) == [
        "error: study.stages: the paper report runs no stages; declare none"]


@pytest.mark.parametrize(("study", "script"), [("demo", "demo"), ("grid", "pipeline"),
                                               ("lab", "lab")])
def test_a_drivers_chain_is_refused_by_study_py_naming_its_script(study: str, script: str) -> None:
    """The demo's, the grid's and the lab's chains are declared studies their own scripts run
    (their stages read those scripts' keys)."""
    with pytest.raises(ConfigError, match=rf"^study={study}: {script}\.py runs this chain \(its "
                                          rf"stages read {script}\.py's keys\); run python "
                                          rf"{script}\.py$"):
        study_specs(compose("study", [f"study={study}"]))


@pytest.mark.parametrize(("select_on", "message"), [
    ("lcb_v6", "is a reported benchmark"),
    ("lcb_v6_delta", r"shares \d+ problems with the reported lcb_v[56]; choose a disjoint set"),
])
def test_a_checkpoint_is_never_chosen_on_the_reported_problems(select_on: str,
                                                               message: str) -> None:
    from ssd.studies.runner import study_specs

    cfg = compose("study", ["model=tiny", f"study.select_on={select_on}",
                            "study.checkpoints=best_of:select"])
    with pytest.raises(ConfigError, match=f"study.select_on={select_on}: {message}"):
        study_specs(cfg)
    disjoint = compose("study", ["model=tiny", "study.select_on=humaneval",
                                 "study.checkpoints=best_of:select"])
    assert [s.name for s in study_specs(disjoint)][:3] == ["generate", "train", "select"]


def test_the_best_checkpoint_is_the_highest_pass_at_1_the_later_on_a_tie(tmp_path: Path) -> None:
    from ssd.identity import StagePlan
    from ssd.pipeline.stages import StageRun
    from ssd.studies.runner import best_checkpoint

    runs = []
    for checkpoint, step, score in (("step-000002", 2, 0.3), ("step-000004", 4, 0.5),
                                    ("step-000006", 6, 0.5), ("final", 8, 0.1)):
        folder = tmp_path / checkpoint
        plan = StagePlan("evaluate", folder, "id", "metrics.json")
        folder.mkdir()
        plan.write_record({"pass@1": score})
        runs.append(StageRun(checkpoint, "evaluate.py", [], plan,
                             extra={"checkpoint": checkpoint, "step": step}))
    assert best_checkpoint(runs) == "step-000006"


# -- the reports' tables on planted numbers (pure) ----------------------------------------------
def _results(passed: list[int], n: int = 10, level: str = "hard") -> list[ProblemResult]:
    return [ProblemResult(f"q{i}", level, n, c) for i, c in enumerate(passed)]


def _run(t: float, p1: float, hard: float, passed: list[int]) -> EvalRun:
    metrics = {"decoding": {"T": t}, "eval": {"name": "x"},
               "overall": {"pass@1": p1, "pass@5": p1}, "per_difficulty": {
                   "hard": {"pass@1": hard, "pass@5": hard}}}
    return EvalRun(Path(f"/runs/{t}"), metrics, _results=_results(passed))


def test_table_2_rows_are_base_ssd_the_paired_difference_and_the_papers() -> None:
    base, ssd = _results([2] * 10), _results([5] * 10)
    comparison = compare(base, ssd, ks=(1, 5), resamples=200, label_a="base", label_b="+SSD")
    header, rows = table2(comparison, PAPER_TABLE2["qwen3-4b-instruct-2507"]["lcb_v6"])
    assert header[1:] == ["pass@1 overall (10)", "pass@1 hard (10)", "pass@5 overall (10)",
                          "pass@5 hard (10)"]
    labels = [r[0] for r in rows]
    assert labels == ["base", "+SSD", "+SSD − base [95% CI]", "relative gain", "paper: base",
                      "paper: +SSD", "paper: difference"]
    assert rows[0][1:3] == ["20.0", "20.0"] and rows[1][1] == "50.0"
    assert rows[2][1].startswith("+30.0 [") and rows[3][1] == "+150.0%"
    # the paper's columns by name: overall 34.0, hard 10.5 (pass@1); difference +7.5
    assert rows[4][1:3] == ["34.0", "10.5"] and rows[6][1] == "+7.5"


def test_the_best_sweep_point_and_ssds_margin_over_it() -> None:
    sweep = [_run(0.6, 0.30, 0.10, [3] * 10), _run(0.8, 0.40, 0.05, [4] * 10),
             _run(1.0, 0.40, 0.20, [4] * 10)]
    assert best_point(sweep, 1, "overall").t == 0.8      # a tie goes to the lower T
    assert best_point(sweep, 1, "hard").t == 1.0
    ssd = _run(1.1, 0.50, 0.50, [5] * 10)
    found = {(m["k"], m["scope"]): m for m in margins(sweep, ssd, {"resamples": 200, "seed": 0})}
    overall = found[(1, "overall")]
    assert overall["best_t"] == 0.8 and overall["margin"] == pytest.approx(0.1)
    assert overall["low"] <= overall["margin"] <= overall["high"]
    assert found[(1, "hard")]["best_t"] == 1.0


def test_the_ridge_is_the_connected_region_near_the_best_configuration() -> None:
    values = {(250, 0.6): 0.45, (250, 0.9): 0.47, (500, 0.9): 0.48, (500, 1.2): 0.30,
              (250, 1.2): 0.20, (500, 0.6): 0.10, (750, 1.2): 0.47, (750, 0.6): 0.2,
              (750, 0.9): 0.2}
    runs = [EvalRun(Path("/r"), {"decoding": {"T": t}, "overall": {"pass@1": v}}, step=s)
            for (s, t), v in values.items()]
    cells = grid_cells(runs)
    best = max(cells, key=lambda c: c["pass@1"])
    found = {(c["step"], c["t"]) for c in ridge(cells, best, 0.02)}
    # (750, 1.2) is within 2 points but not connected: not on the ridge
    assert found == {(500, 0.9), (250, 0.9)}
    assert {(c["step"], c["t"]) for c in ridge(cells, best, 0.05)} == {
        (500, 0.9), (250, 0.9), (250, 0.6)}


# -- end to end on the tiny model ----------------------------------------------------------------
TINY = ["model=tiny", "scale=tiny", "study.benchmarks=[lcb_sample]", "lock.poll_s=0.5"]


def study(workspace: Path, *args: str, tiny: tuple[str, ...] = tuple(TINY)) -> str:
    result = subprocess.run([sys.executable, str(REPO / "study.py"), *tiny, *args],
                            cwd=workspace, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def computations(workspace: Path) -> int:
    return sum(len(p.read_text().splitlines())
               for p in (workspace / "runs").rglob(COMPUTATIONS_FILE))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studies")


@pytest.mark.slow
def test_the_dry_run_lists_every_stage_and_runs_none(workspace: Path) -> None:
    out = study(workspace, "study.base_sweep=[0.6,1.0]", "dry_run=true")
    assert not (workspace / "runs").exists()
    lines = out.splitlines()
    assert lines[0].startswith("study main (tiny): 5 stages; 0 of 3 planned runs complete, "
                               "2 stage(s) planned once their inputs exist")
    for name in ("generate: to compute", "train: after generate",
                 "ssd lcb_sample: after train (its checkpoints: last)",
                 "base lcb_sample: to compute", "base_sweep lcb_sample: to compute (2 jobs"):
        assert any(line.strip().startswith(name) for line in lines), (name, out)
    assert "tokens sampled (8 prompts x 1 x 48)" in out


@pytest.mark.slow
def test_main_writes_table_2_and_figure_2_and_a_rerun_computes_nothing(workspace: Path) -> None:
    study(workspace, "study.base_sweep=[0.6,1.0]")
    [folder] = (workspace / "runs" / "study" / "main" / "tiny").iterdir()
    report = (folder / "report.md").read_text()
    for row in ("| base |", "| +SSD |", "| +SSD − base [95% CI] |", "| relative gain |",
                "Against the best point of the base model's temperature sweep",
                "checkpoint rule: the final checkpoint"):
        assert row in report
    assert (folder / "figure1.png").stat().st_size > 0
    assert (folder / "figure2_lcb_sample.png").stat().st_size > 0
    numbers = json.loads((folder / "main.json").read_text())
    [section] = numbers["benchmarks"]
    assert {m["best_t"] for m in section["margins"]} <= {0.6, 1.0}
    assert [r[0] for r in section["sweep"]["rows"]] == ["0.6", "1"]
    stages = json.loads((folder / "study.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["generate", "train", "ssd lcb_sample",
                                           "base lcb_sample", "base_sweep lcb_sample"]
    assert [r["checkpoint"] for r in stages[2]["runs"]] == ["final"]
    assert len(stages[4]["runs"][0]["also"]) == 1   # one -m job for both temperatures
    before = computations(workspace)
    again = study(workspace, "study.base_sweep=[0.6,1.0]")
    assert computations(workspace) == before
    assert "done (0 stage runs computed, the rest reused)" in again


@pytest.mark.slow
def test_main_can_report_the_best_checkpoint_on_a_set_apart(workspace: Path) -> None:
    study(workspace, "study.base_sweep=[0.6,1.0]", "study.select_on=humaneval",
          "study.checkpoints=best_of:select")
    folder = max((workspace / "runs" / "study" / "main" / "tiny").iterdir(),
                 key=lambda p: (p / "report.md").stat().st_mtime)
    stages = {s["name"]: s for s in json.loads((folder / "study.json").read_text())["stages"]}
    scored = {r["checkpoint"]: json.loads((workspace / r["run_dir"] / "metrics.json").read_text())
              for r in stages["select"]["runs"]}
    assert set(scored) == {"step-000002", "final"}
    best = max(scored, key=lambda c: (scored[c]["pass@1"], c == "final"))
    [chosen] = stages["ssd lcb_sample"]["runs"]
    assert chosen["checkpoint"] == best
    report = (folder / "report.md").read_text()
    assert "checkpoint rule: the best pass@1 at T_eval on `humaneval`" in report


@pytest.mark.slow
def test_stress_reports_diagnostics_the_heat_map_and_the_count_above_the_base(
        workspace: Path) -> None:
    study(workspace, "study=stress", "study.t_eval=[0.6,1.0]")
    [folder] = (workspace / "runs" / "study" / "stress" / "tiny").iterdir()
    report = (folder / "report.md").read_text()
    numbers = json.loads((folder / "stress.json").read_text())
    [section] = numbers["benchmarks"]
    cells = section["cells"]
    assert len(cells) == 2 * 2   # steps 2 and 4 (final) x two temperatures
    above = sum(c["pass@1"] > section["base_pass@1"] for c in cells)
    assert section["above_base"] == above
    assert f"**{above} of 4** (checkpoint, T_eval) configurations" in report
    assert "with an extractable code block" in report and "Per difficulty" in report
    generated = json.loads(next((workspace / "runs" / "generate").rglob(
        "T2_k0_p1_*/run.json")).read_text())
    assert numbers["diagnostics"] == generated["diagnostics"]
    assert generated["config"]["filter"]["drop_single_line"] is False


@pytest.mark.slow
def test_transfer_runs_both_suites_and_writes_table_5(workspace: Path) -> None:
    study(workspace, "study.base_sweep=[0.6,1.0]")   # reused when the main test ran
    before = computations(workspace)
    out = study(workspace, "study=transfer", 'scale.evaluate=["eval.limit=1","eval.n=2",'
                '"decoding.max_tokens=16","progress=false","engine.enforce_eager=true"]',
                tiny=("model=tiny", "scale=tiny", "lock.poll_s=0.5"))
    # the main study's generate and train stages are the transfer study's: reused
    assert "train: complete, reused" in out and "generate: complete, reused" in out
    [folder] = (workspace / "runs" / "study" / "transfer" / "tiny").iterdir()
    table = json.loads((folder / "transfer.json").read_text())
    assert [r["column"] for r in table["sets"]] == [
        "AIME'24", "AIME'25", "HumanEval Py", "HumanEval Sh", "CruxEval I", "CruxEval O", "MMLU"]
    assert "| +SSD |" in (folder / "transfer.md").read_text()
    # two stages computed: the base model's suite and the SSD model's (each its seven sets, in
    # one process and one engine)
    assert computations(workspace) - before == 2


@pytest.mark.slow
def test_the_paper_view_collects_the_studies_beside_the_papers_numbers(workspace: Path) -> None:
    study(workspace, "study.base_sweep=[0.6,1.0]")   # reused when the main test ran
    study(workspace, "study=paper", tiny=())
    text = (workspace / "runs" / "study" / "paper" / "paper.md").read_text()
    assert "## Table 2: lcb_v6" in text and "## Table 5: transfer" in text
    # a paper preset without a run: its cells marked, the paper's number beside
    assert "| [qwen3-4b-instruct-2507]" not in text
    assert "| qwen3-4b-instruct-2507 | base | – (34.0) |" in text
    # the tiny model's main study ran on lcb_sample, not lcb_v6: a row with nothing measured
    assert "(../main/tiny/" in text
