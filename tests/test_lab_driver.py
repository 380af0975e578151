"""The lab driver's pure parts (ssd.pipeline.lab) and the lab benchmark kind (ssd.evaluation.lab).

A learned model fed the teacher's own rows must give back the analytic curve; a metrics record in
evaluate.py's format must parse into those rows; the verdict passes only a listed answer the model
ended; the statistics are the stated Wald interval. No engine, no training.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from ssd.analysis import lab_paths as paths
from ssd.analysis import toy
from ssd.config import ConfigError
from ssd.evaluation.lab import exact_verdict, load_lab
from ssd.lab.base import END, vocabulary, world_token
from ssd.lab.world import World, build_world
from ssd.pipeline import lab
from ssd.pipeline.stages import compose_stage
from tests.conftest import FED, REPO, compose, composed_stages

C4_LAYOUT = ["root", "fork", "lock", "lock", "lock"]
TEMPERATURES = (0.3, 0.5, 0.6394, 0.9, 1.3, 1.7, 2.0)


@pytest.fixture(scope="module")
def c4_spec() -> dict[str, Any]:
    spec = OmegaConf.to_container(compose_stage("lab", []).lab.world, resolve=True)
    assert isinstance(spec, dict)
    return spec


@pytest.fixture(scope="module")
def c4(c4_spec: dict[str, Any]) -> World:
    return build_world(c4_spec, "lab.world")


@pytest.fixture(scope="module")
def shifted(c4_spec: dict[str, Any]) -> World:
    spec = copy.deepcopy(c4_spec)
    spec["name"] = "shifted"
    spec["prompts"] = [{"text": "p0", "layout": C4_LAYOUT, "shift": 0},
                       {"text": "q1", "layout": ["lock", "fork", "root", "lock", "lock"],
                        "shift": [5, 11, -2, 1, 3]}]
    return build_world(spec, "lab.world")


def teacher_rows(world: World) -> tuple[dict[tuple[int, tuple[int, ...]], np.ndarray], list[str]]:
    """The teacher's rows at every success-path state, over the lab model's vocabulary (what a
    perfectly fitted base would show): world tokens as the teacher, end of turn 1 at the end."""
    vocab = vocabulary(world)
    first = vocab.index(world_token(0))
    rows = {}
    for p in range(len(world.prompts)):
        for path in world.success_paths(p):
            for d in range(world.depth + 1):
                row = np.zeros(len(vocab))
                if d < world.depth:
                    row[first:first + world.vocab_size] = world.teacher_row(p, d)
                else:
                    row[vocab.index(END)] = 1.0
                rows[(p, path[:d])] = row
    return rows, vocab


def record_for(world: World, rows: dict[tuple[int, tuple[int, ...]], np.ndarray],
               vocab: list[str]) -> dict[str, Any]:
    """A metrics.json as evaluate.py writes it for a lab run (only the fields the lab reads)."""
    problems = {}
    for p in range(len(world.prompts)):
        states = [{"prefix": paths.answer_text(prefix), "raw": row.tolist(),
                   "decoded": row.tolist()}
                  for (q, prefix), row in sorted(rows.items()) if q == p]
        problems[paths.question_id(world, p)] = {"exact": 0.05, "states": states}
    return {"pass@1": 0.05, "samples": 2000,
            "exact": {"pass@1": 0.05, "vocab": vocab, "end_token": END, "problems": problems}}


# -- learned models --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["c4", "shifted"])
def test_a_learned_model_with_the_teachers_rows_is_the_teacher(name: str, request) -> None:
    world = request.getfixturevalue(name)
    rows, vocab = teacher_rows(world)
    learned = paths.learned_model("base", world, rows, vocab)
    teacher = paths.world_teacher(world)
    assert learned.probs.shape == (len(rows), len(vocab))
    if name == "c4":  # the two paths share the root state only; the last state ends the turn
        assert len(rows) == 1 + 2 * world.depth
    assert len(learned.paths) == len(teacher.paths) == 2 * len(world.prompts)
    assert all(len(path) == world.depth + 1 for path in learned.paths)  # + end of turn
    assert learned.scale == teacher.scale == 1 / len(world.prompts)
    for top_p in (toy.TOP_P_EVAL, 1.0):
        mine = toy.success_probability(learned, TEMPERATURES, top_p)
        analytic = toy.success_probability(teacher, TEMPERATURES, top_p)
        np.testing.assert_allclose(mine, analytic, rtol=0, atol=1e-12)
    np.testing.assert_allclose(toy.success_probability(learned, TEMPERATURES),
                               toy.success_probability(toy.teacher_model(), TEMPERATURES),
                               rtol=0, atol=1e-12)
    optimum = toy.find_optimum(learned, toy.TOP_P_EVAL, paths.T_RANGE)
    assert optimum.success == pytest.approx(0.083336, abs=5e-7)
    assert optimum.temperature == pytest.approx(0.6395, abs=5e-5)


def test_a_learned_model_renormalises_and_its_state_names(c4: World) -> None:
    rows, vocab = teacher_rows(c4)
    scaled = {key: 3.0 * row for key, row in rows.items()}  # e.g. float32 rows summing to 1 ± eps
    learned = paths.learned_model("base", c4, scaled, vocab)
    np.testing.assert_allclose(learned.probs.sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    assert learned.state_names[0] == "p0:-"
    assert "p0:t1 t0 t0 t0 t0" in learned.state_names


def test_the_end_of_turn_step_counts(c4: World) -> None:
    rows, vocab = teacher_rows(c4)
    end = vocab.index(END)
    leaky = dict(rows)
    for key in [k for k in rows if len(k[1]) == c4.depth]:
        row = np.zeros(len(vocab))
        row[end], row[vocab.index("t3")] = 0.5, 0.5
        leaky[key] = row
    learned = paths.learned_model("leaky", c4, leaky, vocab)
    teacher = paths.world_teacher(c4)
    # At top-p 1 and T 1 the model ends the turn half the time where the teacher always does.
    assert toy.success_probability(learned, 1.0, 1.0) == pytest.approx(
        0.5 * toy.success_probability(teacher, 1.0, 1.0), rel=1e-12)


def test_rows_from_record_reads_the_exact_block(c4: World, shifted: World) -> None:
    for world in (c4, shifted):
        rows, vocab = teacher_rows(world)
        record = json.loads(json.dumps(record_for(world, rows, vocab)))  # through JSON, as on disk
        parsed, parsed_vocab = paths.rows_from_record(world, record)
        assert parsed_vocab == vocab
        assert sorted(parsed) == sorted(rows)
        for key, row in rows.items():
            np.testing.assert_array_equal(parsed[key], row)
        assert (0, ()) in parsed  # the empty prefix ("") is the first state
        learned = paths.learned_model("base", world, parsed, parsed_vocab)
        np.testing.assert_allclose(toy.success_probability(learned, TEMPERATURES),
                                   toy.success_probability(paths.world_teacher(world),
                                                           TEMPERATURES), rtol=0, atol=1e-12)


def test_fit_errors_of_the_teacher_are_zero_and_see_a_head_error(c4: World,
                                                                shifted: World) -> None:
    for world in (c4, shifted):
        rows, vocab = teacher_rows(world)
        model = paths.learned_model("base", world, rows, vocab)
        errors = paths.fit_errors(world, model, list(rows), vocab)
        assert errors == pytest.approx({"head": 0.0, "any_token": 0.0, "end_of_turn": 0.0},
                                       abs=1e-15)
    rows, vocab = teacher_rows(c4)
    key = (0, (1, 0))  # the first lock on the tok1 path
    moved = rows[key].copy()
    moved[vocab.index("t0")] -= 0.004
    moved[vocab.index("t9")] += 0.004  # a tail token: off the head
    off = dict(rows)
    off[key] = moved
    errors = paths.fit_errors(c4, paths.learned_model("base", c4, off, vocab), list(off), vocab)
    assert errors["head"] == pytest.approx(0.004, abs=1e-12)
    assert errors["any_token"] == pytest.approx(0.004, abs=1e-12)
    assert errors["end_of_turn"] == pytest.approx(0.0, abs=1e-15)
    end_key = (0, (0, 0, 0, 0, 0))
    leaky = dict(rows)
    leaky[end_key] = rows[end_key].copy()
    leaky[end_key][vocab.index(END)], leaky[end_key][vocab.index("t0")] = 0.999, 0.001
    errors = paths.fit_errors(c4, paths.learned_model("base", c4, leaky, vocab), list(leaky), vocab)
    assert errors["end_of_turn"] == pytest.approx(0.001, abs=1e-12)
    assert errors["head"] == pytest.approx(0.0, abs=1e-15)


def test_planned_temperature_sits_inside_the_optimums_piece(c4: World) -> None:
    teacher = paths.world_teacher(c4)
    optimum = toy.find_optimum(teacher, toy.TOP_P_EVAL, paths.T_RANGE)
    assert optimum.approach == "from_below"
    planned = paths.planned_temperature(teacher, toy.TOP_P_EVAL)
    assert planned == round(optimum.temperature * (1 - paths.BREAKPOINT_MARGIN), 4) == 0.6363
    assert toy.success_probability(teacher, planned) == pytest.approx(0.0833, abs=5e-4)
    # The ideal student peaks at 2.094, beyond vLLM's largest T: planned at the range's edge.
    student = toy.ssd_student(teacher)
    assert toy.find_optimum(student, toy.TOP_P_EVAL, paths.T_RANGE).approach == "range_edge"
    assert paths.planned_temperature(student, toy.TOP_P_EVAL) == paths.VLLM_MAX_T


# -- statistics ------------------------------------------------------------------------------------
def test_binomial_se() -> None:
    assert paths.binomial_se(0.5, 100) == pytest.approx(0.05, rel=1e-15)
    assert paths.binomial_se(0.1, 900) == pytest.approx(0.01, rel=1e-12)
    assert paths.binomial_se(0.0, 10) == paths.binomial_se(1.0, 10) == 0.0


def test_gain_interval_is_the_wald_interval() -> None:
    # The example run's headline: SSD 13.60% vs base 8.90%, 2000 samples each.
    got = paths.gain_interval(0.136, 2000, 0.089, 2000)
    se = math.sqrt(0.136 * 0.864 / 2000 + 0.089 * 0.911 / 2000)
    assert got["gain"] == pytest.approx(0.047, abs=1e-15)
    assert got["se"] == pytest.approx(se, rel=1e-14)
    assert got["se"] == pytest.approx(0.0099645, abs=1e-7)
    assert got["low"] == pytest.approx(0.047 - 1.959963984540054 * se, rel=1e-14)
    assert got["high"] == pytest.approx(0.047 + 1.959963984540054 * se, rel=1e-14)
    assert (round(100 * got["low"], 2), round(100 * got["high"], 2)) == (2.75, 6.65)
    # Unequal sizes, a negative gain, and no variance at all.
    got = paths.gain_interval(0.2, 400, 0.3, 100)
    se = math.sqrt(0.2 * 0.8 / 400 + 0.3 * 0.7 / 100)
    assert (got["gain"], got["se"]) == (pytest.approx(-0.1), pytest.approx(se))
    assert got["high"] == pytest.approx(-0.1 + 1.959963984540054 * se)
    assert paths.gain_interval(0.0, 50, 0.0, 50) == {"gain": 0.0, "se": 0.0, "low": 0.0,
                                                   "high": 0.0}


# -- the lab benchmark -----------------------------------------------------------------------------
def test_world_files_and_load_lab(c4: World, shifted: World, tmp_path: Path) -> None:
    files = lab.write_world_files(shifted, tmp_path)
    assert json.loads(files.pool.read_text()) == [{"problem": "p0"}, {"problem": "q1"}]
    problems = load_lab(files.benchmark)
    assert [p.question_id for p in problems] == ["shifted/p0", "shifted/q1"]
    assert [p.content for p in problems] == ["p0", "q1"]
    assert all(p.kind == "exact" and p.platform == "lab" and not p.tests for p in problems)
    assert problems[1].answers == tuple(paths.answer_text(path)
                                        for path in shifted.success_paths(1))
    assert problems[1].answers == ("t5 t11 t14 t1 t3", "t5 t11 t15 t1 t3")
    mtime = files.benchmark.stat().st_mtime_ns
    lab.write_world_files(shifted, tmp_path)  # same content: left as is
    assert files.benchmark.stat().st_mtime_ns == mtime
    [problem] = load_lab(lab.write_world_files(c4, tmp_path / "c4").benchmark)
    assert problem.answers == ("t0 t0 t0 t0 t0", "t1 t0 t0 t0 t0")


def test_load_lab_normalises_answers_and_rejects_rows_without_answers(tmp_path: Path) -> None:
    good = {"question_id": "w/p0", "prompt": "p0", "answers": ["  t1\tt0 ", "t0 t0"]}
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(good) + "\n\n")
    [problem] = load_lab(path)
    assert problem.answers == ("t1 t0", "t0 t0")
    for bad in ({"question_id": "w/p1", "prompt": "p1"},
                {"question_id": "w/p1", "prompt": "p1", "answers": []},
                {"question_id": "w/p1", "prompt": "p1", "answers": "t0 t0"},
                {"question_id": "w/p1", "prompt": "p1", "answers": [["t0"]]},
                {"question_id": 3, "prompt": "p1", "answers": ["t0"]},
                {"question_id": "w/p1", "answers": ["t0"]}):
        path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=r"^line 3: needs question_id, prompt and a "
                                             r"non-empty list of answers"):
            load_lab(path)


def test_exact_verdict(c4: World, tmp_path: Path) -> None:
    [problem] = load_lab(lab.write_world_files(c4, tmp_path).benchmark)
    for completion in ("t0 t0 t0 t0 t0", "t1 t0 t0 t0 t0", " t1  t0\tt0\nt0 t0 \n"):
        verdict = exact_verdict(problem, completion, "stop")
        assert verdict.passed and verdict.reason is None
        assert exact_verdict(problem, completion, None).passed  # completions read from a file
        cut = exact_verdict(problem, completion, "length")
        assert not cut.passed and cut.reason == "not_ended"
    for completion in ("t0 t0 t0 t0", "t0 t0 t0 t0 t0 t0", "t2 t0 t0 t0 t0", "t0t0t0t0t0", "",
                       "t0 t0 t0 t0 t0 <|end|>"):
        verdict = exact_verdict(problem, completion, "stop")
        assert not verdict.passed and verdict.reason == "wrong_answer", completion


def test_evaluate_loads_a_lab_benchmark_without_calling_it_untested(c4: World,
                                                                    tmp_path: Path) -> None:
    from ssd.evaluation.run import check_eval, load_problems

    files = lab.write_world_files(c4, tmp_path)
    cfg = compose_stage("evaluate", ["eval=lab", f"eval.path={files.benchmark}",
                                     "eval.name=lab-c4"])
    check_eval(cfg)
    problems, problem_set = load_problems(cfg)
    assert [p.question_id for p in problems] == ["c4/p0"]
    assert problems[0].kind == "exact"
    assert (problem_set["name"], problem_set["problems"]) == ("lab-c4", 1)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"question_id": "c4/p0", "prompt": "p0"}) + "\n")
    cfg = compose_stage("evaluate", ["eval=lab", f"eval.path={broken}", "eval.name=lab-c4"])
    with pytest.raises(ConfigError, match=r"^eval\.path=.*broken\.jsonl: cannot load lab "
                                          r"problems \(ValueError: line 1: "):
        load_problems(cfg)


def test_the_declared_stages_carry_the_lab_values(c4: World, tmp_path: Path) -> None:
    values = OmegaConf.to_container(compose_stage("lab", []).lab, resolve=True)
    assert isinstance(values, dict)
    files = lab.write_world_files(c4, tmp_path)
    runner = lab.chain_runner(lab.chain_values(c4, files, tmp_path / "base", "none",
                                               values["ssd"], values["train"], values["eval"]),
                              job="test")
    assert [s.name for s in runner.specs] == ["generate", "train", "evaluate base", "evaluate ssd"]
    stages = composed_stages(runner)
    generate, evaluate = stages["generate"], stages["evaluate base"]
    assert (generate["decoding"]["T"], generate["decoding"]["n"]) == (0.9, 32000)
    assert (generate["truncation"]["top_k"], generate["truncation"]["top_p"]) == (0, 0.85)
    assert generate["decoding"]["max_tokens"] == 6 and generate["data"]["path"] == str(files.pool)
    assert (evaluate["eval"]["format"], evaluate["eval"]["path"]) == ("lab", str(files.benchmark))
    assert (evaluate["truncation"]["top_p"], evaluate["eval"]["n"]) == (0.8, 2000)
    assert evaluate["model"]["path"] == str(tmp_path / "base")
    assert stages["evaluate ssd"]["model"]["path"] == FED["ssd"][0].split("=")[1]
    # the sweep the plan shows is the lab's grid; the runner asks for the run's own when it runs
    assert runner.specs[2].sweep == ("decoding.T", tuple(values["eval"]["temperatures"]))
    # an ablation or a LoRA rank: the same stages without the base
    alone = lab.chain_runner(lab.chain_values(c4, files, tmp_path / "base", "none", values["ssd"],
                                              values["train"], values["eval"], "ssd-x", False),
                             job="test")
    assert [s.name for s in alone.specs] == ["generate", "train", "evaluate ssd"]


# -- values that used to pass check_lab and fail only once stages had run -------------------------
def test_a_training_temperature_above_2_fails_up_front() -> None:
    with pytest.raises(ConfigError, match=r"^lab\.ssd\.t_train"):
        lab.check_lab(compose_stage("lab", ["lab.ssd.t_train=2.5"]))


def test_a_bad_ablation_value_fails_up_front() -> None:
    with pytest.raises(ConfigError, match=r"^lab\.ablations\.0\.ssd\.top_p"):
        lab.check_lab(compose_stage("lab", ["ablate=true",
                                            "lab.ablations=[{name:x,ssd:{top_p:0}}]"]))


def test_a_reserved_prompt_word_fails_up_front() -> None:
    with pytest.raises(ConfigError, match=r"^lab\.world\.prompts\[0\]\.text"):
        lab.check_lab(compose_stage(
            "lab", ["lab.world.prompts=[{text:t3,layout:[root,fork,lock,lock,lock]}]"]))


def test_repeated_success_roles_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^lab\.world\.archetypes\.root\.success"):
        lab.check_lab(compose_stage("lab", ["lab.world.archetypes.root.success=[0,0]"]))


def test_zero_training_steps_fail_up_front() -> None:
    with pytest.raises(ConfigError, match=r"^lab\.train\.steps"):
        lab.check_lab(compose_stage("lab", ["lab.train.steps=0"]))


def test_the_shipped_lab_benchmark_is_what_the_lab_writes_for_its_default_world(
        tmp_path: Path) -> None:
    world = lab.check_lab(compose_stage("lab", []))
    files = lab.write_world_files(world, tmp_path)
    shipped = Path(compose_stage("evaluate", ["eval=lab"]).eval.path)
    assert shipped.read_text() == files.benchmark.read_text()


# -- the stages' configs --------------------------------------------------------------------------
# What the lab's stages composed to when their overrides were written as strings, recorded then:
# the typed mappings compose to the same configs (the same identities, the same numbers).
RECORDED = json.loads((REPO / "tests" / "fixtures" / "lab_stage_configs.json").read_text())


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_the_lab_stages_compose_as_recorded(case: str) -> None:
    """The declared stages (conf/study/lab.yaml) compose to what the lab's stages composed to
    before they were declared: the same identities, the same numbers."""
    recorded = RECORDED[case]
    cfg = compose("lab", recorded["overrides"])
    world = lab.check_lab(cfg)
    values = OmegaConf.to_container(cfg.lab, resolve=True)
    files = lab.LabFiles(Path("runs/lab/w"), Path("runs/lab/w/pool.json"),
                         Path("runs/lab/w/benchmark.jsonl"))
    chain = [world, files, Path("/cache/base"), recorded["logger"], values["ssd"]]
    full = composed_stages(lab.chain_runner(lab.chain_values(
        *chain, values["train"], values["eval"]), job="test"))
    lora = composed_stages(lab.chain_runner(lab.chain_values(
        *chain, lab.lora_train_values(values["train"], {"lr": None}, 2), values["eval"],
        with_base=False), job="test"))
    assert full["generate"] == recorded["stages"]["generate"]
    assert full["train"] == recorded["stages"]["train"]
    assert lora["train"] == recorded["stages"]["train lora"]
    assert full["evaluate ssd"] == recorded["stages"]["evaluate"]
    # the base's evaluation: the SSD model's, with the base in its place
    base = copy.deepcopy(recorded["stages"]["evaluate"])
    base["model"].update({"path": "/cache/base", "name": f"lab-{world.name}-base"})
    assert full["evaluate base"] == base
