"""Lab worlds (ssd.lab.world): validation in one line naming the key, and the semantics that make
the c4 preset the paper's Appendix C.4 toy exactly (rows, success paths, P(T), both optima).

Pure and fast: no engine, no fitting. Configs are composed over conf/ as lab.py composes them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ssd.analysis import toy
from ssd.analysis.lab_paths import world_teacher
from ssd.config import ConfigError
from ssd.decoding import decode_probs
from ssd.lab.base import END, SPECIAL_TOKENS, vocabulary
from ssd.lab.world import (
    World,
    WorldError,
    build_world,
    geometric_tail,
    path_success,
    world_states,
)
from ssd.pipeline.lab import check_lab
from ssd.pipeline.stages import compose_stage
from tests.conftest import cli_error

C4_LAYOUT = ["root", "fork", "lock", "lock", "lock"]
TEMPERATURES = (0.3, 0.6394, 0.9, 1.3, 2.0, 3.0)


def lab_config(overrides: list[str]):
    return compose_stage("lab", overrides)


@pytest.fixture(scope="module")
def c4_spec() -> dict[str, Any]:
    spec = OmegaConf.to_container(lab_config([]).lab.world, resolve=True)
    assert isinstance(spec, dict)
    return spec


@pytest.fixture(scope="module")
def c4(c4_spec: dict[str, Any]) -> World:
    return build_world(c4_spec, "lab.world")


def with_prompts(spec: dict[str, Any], prompts: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["prompts"] = prompts
    return out


@pytest.fixture(scope="module")
def shifted(c4_spec: dict[str, Any]) -> World:
    """Two prompts: c4 as is, and c4 with every position's roles moved (one shift negative)."""
    return build_world(with_prompts(c4_spec, [
        {"text": "p0", "layout": C4_LAYOUT, "shift": 0},
        {"text": "q1", "layout": C4_LAYOUT, "shift": [3, 7, -1, 5, 9]},
    ]), "lab.world")


# -- bad values: one line naming the key -----------------------------------------------------------
NOT_ONE = ",".join(["0.5"] + ["0.1"] * 15)  # 16 values summing to 2

BAD_LAB_VALUES = [
    ([f"+lab.world.archetypes.lock.probs=[{NOT_ONE}]"], "lab.world.archetypes.lock.probs"),
    (["lab.world.archetypes.fork.head=[0.5,0.3,0.2,0.1]"], "lab.world.archetypes.fork.head"),
    (["lab.world.archetypes.root.head=[0.5,0.5]"], "lab.world.archetypes.root.head"),
    (["lab.ssd.top_p=0"], "lab.ssd.top_p"),
    (["lab.ssd.top_p=1.5"], "lab.ssd.top_p"),
    (["lab.eval.top_p=0"], "lab.eval.top_p"),
    (["lab.eval.top_p=1.01"], "lab.eval.top_p"),
    (["lab.world.archetypes.lock.success=[]"], "lab.world.archetypes.lock.success"),
    (["lab.world.archetypes.lock.success=[16]"], "lab.world.archetypes.lock.success"),
    (["lab.world.prompts=[{text:p0,layout:[root,fork,gate]}]"], "lab.world.prompts[0].layout"),
    (["lab.world.prompts=[{text:p0,layout:[root,fork,lock,lock,lock]},"
      "{text:p1,layout:[root,fork,lock,lock]}]"], "lab.world.prompts[1].layout"),
    (["lab.world.prompts=[{text:p0,layout:[root,fork],shift:[1,2,3]}]"],
     "lab.world.prompts[0].shift"),
    (["lab.world.prompts=[{text:p0,layout:[root]},{text:p0,layout:[fork]}]"],
     "lab.world.prompts"),
    (["lab.world.prompts=[]"], "lab.world.prompts"),
    (["lab.world.vocab_size=1"], "lab.world.vocab_size"),
    (["lab.eval.temperatures=[0.5,2.5]"], "lab.eval.temperatures"),
    (["lab.eval.temperatures=[]"], "lab.eval.temperatures"),
    (["lab.eval.n=4"], "lab.eval.n"),
    (["lab.base.hidden_size=48"], "lab.base.hidden_size"),
    (["lab.ssd.samples=0"], "lab.ssd.samples"),
    (["lab.ssd.t_train=0"], "lab.ssd.t_train"),
    (["lab.ablations=[{name:x,ssd:{temperature:0.5}}]"], "lab.ablations[0].ssd"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_LAB_VALUES,
                         ids=[f"{i}-{key}" for i, (_, key) in enumerate(BAD_LAB_VALUES)])
def test_bad_lab_value_fails_in_one_line_naming_the_key(overrides: list[str], key: str) -> None:
    cfg = lab_config(overrides)
    with pytest.raises(ConfigError) as error:
        check_lab(cfg)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(key), message
    assert message[len(key)] in "=. :", message  # the key itself, not a longer one


def test_the_default_lab_and_its_ablations_pass() -> None:
    world = check_lab(lab_config(["ablate=true"]))
    assert (world.name, world.vocab_size, world.depth, len(world.prompts)) == ("c4", 16, 5, 1)


def test_a_bad_value_on_the_command_line_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    assert cli_error("lab", ["lab.ssd.top_p=0"], tmp_path) == [
        "error: lab.ssd.top_p=0: must be in (0, 1] (1.0: off)"]
    assert not (tmp_path / "runs").exists()


def test_world_errors_name_the_key_they_are_given(c4_spec: dict[str, Any]) -> None:
    bad = copy.deepcopy(c4_spec)
    bad["archetypes"]["lock"]["probs"] = [0.9] + [0.01] * 15  # sums to 1.05
    with pytest.raises(WorldError, match=r"^custom\.archetypes\.lock\.probs sums to 1\.05;"):
        build_world(bad, "custom")
    negative = copy.deepcopy(c4_spec)
    negative["archetypes"]["lock"]["probs"] = [1.1, -0.1] + [0.0] * 14  # sums to 1, negative
    with pytest.raises(WorldError, match=r"^lab\.archetypes\.lock\.probs sums to 1;"):
        build_world(negative)
    short = copy.deepcopy(c4_spec)
    short["archetypes"]["lock"]["probs"] = [0.5, 0.5]
    with pytest.raises(WorldError, match=r"^lab\.archetypes\.lock\.probs: 2 values"):
        build_world(short)


def test_prompt_texts_are_single_words(c4_spec: dict[str, Any]) -> None:
    for text in ("two words", "tab\there", "  "):
        spec = with_prompts(c4_spec, [{"text": "p0", "layout": C4_LAYOUT},
                                      {"text": text, "layout": C4_LAYOUT}])
        with pytest.raises(WorldError, match=r"^lab\.prompts\[1\]\.text=.*: one word"):
            build_world(spec)


# -- c4 is the paper's toy -------------------------------------------------------------------------
def test_c4_teacher_rows_are_the_toys(c4: World) -> None:
    paper = toy.teacher_model().probs
    expected = [paper[toy.ROOT], paper[toy.FORK], *[paper[toy.LOCK]] * toy.N_LOCKS]
    for depth, row in enumerate(expected):
        np.testing.assert_allclose(c4.teacher_row(0, depth), row, rtol=0, atol=1e-16)
    np.testing.assert_allclose(geometric_tail(0.25, 12, 0.5), toy.geometric_tail(0.25),
                               rtol=0, atol=1e-17)
    rows, paths = world_states(c4, 0)
    assert rows.shape == (5, 16)
    assert paths == [[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
                     [(0, 1), (1, 0), (2, 0), (3, 0), (4, 0)]]


def test_c4_success_paths(c4: World) -> None:
    assert c4.success_paths(0) == [(0, 0, 0, 0, 0), (1, 0, 0, 0, 0)]


def test_shifts_map_roles_to_tokens(c4: World, shifted: World) -> None:
    assert shifted.success_paths(0) == c4.success_paths(0)
    # root roles 0/1 -> tokens 3/4; fork 0 -> 7; lock 0 -> -1 mod 16 = 15, 5, 9.
    assert shifted.success_paths(1) == [(3, 7, 15, 5, 9), (4, 7, 15, 5, 9)]
    assert [p.shift for p in shifted.prompts[1].positions] == [3, 7, 15, 5, 9]
    for depth, position in enumerate(shifted.prompts[1].positions):
        probs = shifted.archetypes[position.archetype].probs
        row = shifted.teacher_row(1, depth)
        for role in range(16):
            assert row[shifted.token(role, position)] == probs[role]
        np.testing.assert_array_equal(np.sort(row), np.sort(c4.teacher_row(0, depth)))
    assert shifted.digest() != c4.digest()
    assert c4.digest() == build_world(OmegaConf.to_container(
        lab_config([]).lab.world, resolve=True), "lab.world").digest()


def test_a_scalar_shift_applies_to_every_position(c4_spec: dict[str, Any]) -> None:
    world = build_world(with_prompts(c4_spec, [{"text": "p0", "layout": C4_LAYOUT, "shift": 18}]))
    assert world.success_paths(0) == [(2, 2, 2, 2, 2), (3, 2, 2, 2, 2)]


def test_a_whole_probs_row_is_taken_as_given(c4_spec: dict[str, Any]) -> None:
    spec = copy.deepcopy(c4_spec)
    row = [0.6, 0.4] + [0.0] * 14
    spec["archetypes"]["lock"] = {"probs": row, "success": [1]}
    world = build_world(spec)
    np.testing.assert_array_equal(world.archetypes["lock"].probs, row)
    assert world.success_paths(0) == [(0, 0, 1, 1, 1), (1, 0, 1, 1, 1)]


def _decoded(rows: np.ndarray, t: float, top_p: float) -> np.ndarray:
    return decode_probs(torch.from_numpy(rows), t, top_p=top_p).probs.numpy()


@pytest.mark.parametrize("top_p", [toy.TOP_P_EVAL, 1.0])
def test_path_success_on_c4_rows_is_the_toys_formula(c4: World, top_p: float) -> None:
    rows, paths = world_states(c4, 0)
    paper = toy.teacher_model().probs
    for t in TEMPERATURES:
        q_world = _decoded(rows, t, top_p)
        q_toy = _decoded(paper, t, top_p)
        expected = toy.success_from_policy(q_toy)
        assert path_success(q_world, paths) == pytest.approx(expected, rel=1e-12, abs=0)
        assert path_success(q_toy, toy.C4_PATHS) == pytest.approx(expected, rel=1e-12, abs=0)
    # Batched rows: a leading T axis.
    q = np.stack([_decoded(rows, t, top_p) for t in TEMPERATURES])
    expected = [toy.success_from_policy(_decoded(paper, t, top_p)) for t in TEMPERATURES]
    np.testing.assert_allclose(path_success(q, paths), expected, rtol=1e-12)


def test_path_success_sums_products() -> None:
    rows = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert path_success(rows, [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]) == pytest.approx(0.5)
    assert path_success(rows, []) == 0.0


def test_c4_teacher_model_reproduces_the_toy_exactly(c4: World) -> None:
    teacher = world_teacher(c4)
    assert teacher.scale == 1.0
    assert teacher.state_names == ("p0@0", "p0@1", "p0@2", "p0@3", "p0@4")
    paper = toy.teacher_model()
    for t in TEMPERATURES:
        assert toy.success_probability(teacher, t) == pytest.approx(
            toy.success_probability(paper, t), rel=1e-12, abs=0)
    for model, reference, t_star, p_star in (
            (teacher, paper, 0.6395, 0.083336),
            (toy.ssd_student(teacher), toy.ssd_student(paper), 2.0941, 0.137732)):
        mine, theirs = toy.find_optimum(model), toy.find_optimum(reference)
        assert mine.success == pytest.approx(theirs.success, rel=1e-12)
        assert mine.temperature == pytest.approx(theirs.temperature, rel=1e-9)
        assert mine.approach == theirs.approach == "from_below"
        assert mine.temperature == pytest.approx(t_star, abs=5e-5)
        assert mine.success == pytest.approx(p_star, abs=5e-7)


def test_a_shifted_or_reordered_world_has_the_same_curves(c4: World, c4_spec: dict[str, Any],
                                                         shifted: World) -> None:
    """P is a product over positions, so moving roles onto other tokens or the locks before the
    fork changes nothing analytic (only what the model has to learn per prompt)."""
    reordered = build_world(with_prompts(c4_spec, [
        {"text": "a", "layout": C4_LAYOUT, "shift": 2},
        {"text": "b", "layout": ["lock", "root", "lock", "fork", "lock"], "shift": [1, 2, 3, 4, 5]},
    ]))
    base = world_teacher(c4)
    for world in (shifted, reordered):
        model = world_teacher(world)
        assert model.scale == 0.5
        assert len(model.paths) == 4 and model.probs.shape == (10, 16)
        for t in TEMPERATURES:
            assert toy.success_probability(model, t) == pytest.approx(
                toy.success_probability(base, t), rel=1e-12, abs=0)
        student = toy.ssd_student(model)
        assert toy.find_optimum(student).success == pytest.approx(0.137732, abs=5e-7)


# -- the base model's vocabulary -------------------------------------------------------------------
def test_vocabulary_order(c4: World, shifted: World) -> None:
    assert vocabulary(c4) == [*SPECIAL_TOKENS, *(f"t{i}" for i in range(16)), "p0"]
    assert vocabulary(shifted)[-2:] == ["p0", "q1"]
    assert vocabulary(c4).index(END) == 3


@pytest.mark.parametrize("word", ["t3", "t15", END, "<|user|>"])
def test_a_reserved_prompt_word_is_refused(c4_spec: dict[str, Any], word: str) -> None:
    with pytest.raises(WorldError, match=r"lab\.prompts\[0\]\.text=.*a reserved token"):
        build_world(with_prompts(c4_spec, [{"text": word, "layout": C4_LAYOUT}]))


def test_t16_is_a_free_word_in_a_16_token_world(c4_spec: dict[str, Any]) -> None:
    world = build_world(with_prompts(c4_spec, [{"text": "t16", "layout": C4_LAYOUT}]))
    assert vocabulary(world)[-1] == "t16"
