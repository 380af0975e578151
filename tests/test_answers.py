"""Answer tasks (AIME, MMLU): oracle answers on the shipped sets, the answer classes, the prompts,
and the task table's loaders and identity values."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssd.config import ConfigError
from ssd.evaluation.answers import (
    ANSWERED,
    BOXED_INSTRUCTION,
    CODE_BLOCK_INSTEAD,
    LETTERS,
    NO_ANSWER,
    choice_answer,
    choice_letter,
    last_boxed,
    math_answer,
)
from ssd.evaluation.run import check_eval, load_problems, run_identity
from ssd.evaluation.tasks import load_aime, load_mmlu, messages_for
from tests.conftest import REPO, compose

TRANSFER = REPO / "data" / "transfer"
AIME = [*load_aime(str(TRANSFER / "aime" / "aime24.jsonl")),
        *load_aime(str(TRANSFER / "aime" / "aime25.jsonl"))]
MMLU = load_mmlu(str(TRANSFER / "mmlu" / "mmlu_test.jsonl.gz"))
REASONING = "Let me work through this.\n\nFirst, 2 + 2 = 4 and $x^2 = 9$ gives $x = 3$.\n\n"
# The ways models state a multiple-choice answer (the last line of a chain of thought).
FORMS = ["Answer: {}", "**Answer: {}**", "Answer: ({})", "The answer is {}.", "**Answer:** {}",
         "answer is **({})**", "Final Answer: $\\boxed{{{}}}$", "{}"]


def test_shipped_sets_have_their_published_sizes() -> None:
    assert len(AIME) == 60 and len({p.question_id for p in AIME}) == 60
    assert len(MMLU) == 14_042 and len({p.difficulty for p in MMLU}) == 57
    assert len({p.question_id for p in MMLU}) == 14_042
    assert {p.reference for p in MMLU} == set(LETTERS)
    assert sum(p.reference.startswith("0") for p in AIME if p.reference) >= 1  # "025" and such


def test_aime_gold_answers_in_a_box_pass_and_off_by_one_fail() -> None:
    right = [math_answer(p.reference, f"{REASONING}So the answer is $\\boxed{{{p.reference}}}$.")
             for p in AIME if p.reference is not None]
    assert sum(c.verdict.passed for c in right) == 60
    assert {c.answer_class for c in right} == {ANSWERED}
    wrong = [math_answer(p.reference, f"{REASONING}\\boxed{{{int(p.reference) + 1}}}")
             for p in AIME if p.reference is not None]
    assert sum(c.verdict.passed for c in wrong) == 0
    assert {c.verdict.reason for c in wrong} == {"wrong_answer"}


def test_aime_compares_by_value() -> None:
    assert math_answer("025", "\\boxed{25}").verdict.passed
    assert math_answer("25", "\\boxed{025}").verdict.passed
    assert math_answer("70", "\\boxed{\\frac{140}{2}}").verdict.passed
    assert not math_answer("70", "\\boxed{71}").verdict.passed
    # the last box is the answer
    assert not math_answer("70", "\\boxed{70} ... on second thought \\boxed{7}").verdict.passed
    assert last_boxed("\\boxed{\\frac{1}{2}} then \\boxed{{3}}") == "{3}"


def test_no_final_answer_is_counted_apart() -> None:
    none = math_answer("70", f"{REASONING}The answer is 70.")
    assert (none.answer_class, none.verdict.passed, none.verdict.reason) == (
        NO_ANSWER, False, NO_ANSWER)
    code = math_answer("70", "```python\nprint(sum(range(12)))\n```")
    assert (code.answer_class, code.verdict.passed, code.verdict.reason) == (
        CODE_BLOCK_INSTEAD, False, CODE_BLOCK_INSTEAD)
    assert math_answer("70", "an unclosed \\boxed{70").answer_class == NO_ANSWER
    assert math_answer("70", "I put it within \\boxed{ }.").answer_class == NO_ANSWER
    assert choice_answer("B", "```python\nprint('B')\n```").answer_class == CODE_BLOCK_INSTEAD
    assert choice_answer("B", "I am not sure.").answer_class == NO_ANSWER


@pytest.mark.parametrize("form", FORMS)
def test_mmlu_gold_letters_in_every_form_pass_and_shifted_ones_fail(form: str) -> None:
    def shifted(letter: str) -> str:
        return LETTERS[(LETTERS.index(letter) + 1) % 4]

    prefix = "" if form == "{}" else REASONING
    right = sum(choice_answer(p.reference, prefix + form.format(p.reference)).verdict.passed
                for p in MMLU if p.reference is not None)
    wrong = sum(choice_answer(p.reference, prefix + form.format(shifted(p.reference))
                              ).verdict.passed for p in MMLU if p.reference is not None)
    assert (right, wrong) == (14_042, 0)


def test_choice_letter_takes_the_last_answer_and_not_words() -> None:
    assert choice_letter("Answer: A is tempting, but the answer is C") == "C"
    assert choice_letter("Answer: Because of the tides.") is None
    assert choice_letter("the answer is a matter of taste") is None


def test_prompts_state_the_instruction_and_the_choices() -> None:
    aime = compose("evaluate", ["eval=aime24"])
    messages = messages_for(aime.eval)(AIME[0])
    assert messages[-1]["content"].endswith(BOXED_INSTRUCTION)
    assert AIME[0].content.strip() in messages[-1]["content"]
    zero = messages_for(compose("evaluate", ["eval=mmlu"]).eval)(MMLU[0])[0]["content"]
    assert "\nA. " in zero and "\nD. " in zero and '"Answer: X"' in zero
    assert "The following are multiple choice" not in zero
    five = messages_for(compose("evaluate", ["eval=mmlu", "eval.shots=5"]).eval)(MMLU[0])
    text = five[0]["content"]
    assert text.startswith("The following are multiple choice questions (with answers) about "
                           "abstract algebra.")
    assert text.count("\nAnswer: ") == 5 and text.endswith(zero)


def test_task_presets_load_and_name_their_identity(tmp_path: Path) -> None:
    cfg = compose("evaluate", ["model=tiny", "eval=mmlu", "eval.limit=3"])
    check_eval(cfg)
    problems, problem_set = load_problems(cfg)
    assert [p.question_id for p in problems] == [f"abstract_algebra/{i}" for i in range(3)]
    assert problem_set["problems"] == 3
    five = compose("evaluate", ["model=tiny", "eval=mmlu", "eval.limit=3", "eval.shots=5"])
    assert run_identity(five) != run_identity(cfg)  # the prompt differs: another run
    with pytest.raises(ConfigError, match=r"^eval\.shots=3: must be 0"):
        check_eval(compose("evaluate", ["eval=mmlu", "eval.shots=3"]))
    with pytest.raises(ConfigError, match=r"^eval\.path=.*nope.*: must be an existing aime"):
        check_eval(compose("evaluate", ["eval=aime25", f"eval.path={tmp_path}/nope.jsonl"]))
