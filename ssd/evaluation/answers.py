"""Answer tasks: benchmarks whose completion ends in an answer compared with a gold one, with no
program run (the paper's Table 5: AIME and MMLU).

* **Math answer** (AIME): the model is asked to reason step by step and put its final answer
  within ``\\boxed{}``; the last ``\\boxed{...}`` of the completion is the answer, and it is
  compared with the gold answer *by value* by ``math-verify`` (HF's maintained parser and
  comparer: "025" equals "25", ``\\frac{1}{2}`` equals 0.5), not by hand-written normalisation.
* **Multiple choice** (MMLU): zero-shot chain of thought ending in a line "Answer: X"; the letter
  is read from the last of the usual ways models write it (``Answer: B``, ``**Answer: B**``,
  ``Answer: (B)``, ``**Answer:** B``, ``The answer is B``, ``\\boxed{B}``, or a reply that is
  the letter alone). The original harness's 5-shot prefix from the dev split is an option
  (``eval.shots=5``; ``mmlu_messages``).

Every completion falls in one answer class, recorded with its verdict: ``answered`` (it gave an
answer; right or wrong), ``no_answer`` (no final answer: it fails, counted apart), or
``code_block_instead`` (no final answer but a fenced code block: the paper's Llama-3.1-8B
failure on AIME after SSD on code, counted on its own).

Pure: text in, verdicts out; math-verify's own time limit uses SIGALRM, so ``math_answer`` is
called on the main thread (evaluate's checker does: an answer check is a comparison, not a job).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ssd.code_blocks import fenced_blocks
from ssd.evaluation.checking import Verdict

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MMLU_INSTRUCTION = (
    "Think the question through step by step, then end your reply with a line of the form "
    "\"Answer: X\", where X is the letter (A, B, C or D) of the choice you pick."
)
MMLU_FEW_SHOT_HEADER = "The following are multiple choice questions (with answers) about {}."
LETTERS = "ABCD"

ANSWERED = "answered"
NO_ANSWER = "no_answer"
CODE_BLOCK_INSTEAD = "code_block_instead"
ANSWER_CLASSES = (ANSWERED, NO_ANSWER, CODE_BLOCK_INSTEAD)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: B", "**Answer:** (B)", "answer is B", "Final answer - B": the word "answer", an
# optional "is", punctuation or markdown, then one letter that is not the start of a word.
_LETTER_AFTER_ANSWER = re.compile(
    r"(?:answer|Answer|ANSWER)(?:\s+(?:is|IS))?(?:\s+option)?[\s*_:：\-=]*[\(\[]?\s*"
    r"(?P<letter>[ABCD])(?![A-Za-z0-9])")
_BOXED_LETTER = re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{)?\s*\(?(?P<letter>[ABCD])\)?\s*\}")
_LETTER_ALONE = re.compile(r"^\W*(?P<letter>[ABCD])\W*$")


@dataclass(frozen=True)
class AnswerCheck:
    """A completion's answer class, the answer read from it (None without one) and its verdict."""

    answer_class: str
    answer: str | None
    verdict: Verdict

    def fields(self) -> dict[str, Any]:
        """What a result record adds: the class and the answer as read."""
        return {"answer_class": self.answer_class, "answer": self.answer}


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces close."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for position in range(start, len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:position]
                    break
    return found


def has_code_block(text: str) -> bool:
    """A fenced code block opens somewhere in the text (closed or not; the project's fence rule,
    ``ssd.code_blocks``)."""
    blocks, _ = fenced_blocks(text)
    return bool(blocks)


def _missing(completion: str, total: int) -> AnswerCheck:
    if has_code_block(completion):
        return AnswerCheck(CODE_BLOCK_INSTEAD, None,
                           Verdict(False, CODE_BLOCK_INSTEAD, "a code block, no final answer",
                                   0, total))
    return AnswerCheck(NO_ANSWER, None, Verdict(False, NO_ANSWER, "no final answer", 0, total))


@lru_cache(maxsize=4096)
def _parsed(boxed: str) -> Any:
    """math-verify's reading of a boxed answer (cached: 30 gold answers are read again and
    again)."""
    from math_verify import LatexExtractionConfig, parse

    return parse(f"\\boxed{{{boxed}}}", extraction_config=[LatexExtractionConfig()])


def math_answer(gold: str, completion: str) -> AnswerCheck:
    """The last ``\\boxed{}`` of ``completion`` compared by value with ``gold`` (math-verify)."""
    from math_verify import verify

    boxed = last_boxed(completion)
    if boxed is None or not boxed.strip():  # an empty box (the instruction echoed) answers nothing
        return _missing(completion, 1)
    parsed = _parsed(boxed)
    if parsed and verify(_parsed(gold), parsed):
        return AnswerCheck(ANSWERED, boxed, Verdict(True, None, "", 1, 1))
    detail = f"answered {boxed[:60]!r}, expected {gold!r}" + ("" if parsed else " (unreadable)")
    return AnswerCheck(ANSWERED, boxed, Verdict(False, "wrong_answer", detail, 0, 1))


def choice_letter(completion: str) -> str | None:
    """The letter a multiple-choice completion ends on: the last "answer ... X" or ``\\boxed{X}``,
    else the whole reply when it is a letter alone; None when there is none."""
    found = [(m.start(), m.group("letter")) for pattern in (_LETTER_AFTER_ANSWER, _BOXED_LETTER)
             for m in pattern.finditer(completion)]
    if found:
        return max(found)[1]
    alone = _LETTER_ALONE.match(completion.strip())
    return alone.group("letter") if alone else None


def choice_answer(gold: str, completion: str) -> AnswerCheck:
    """A multiple-choice completion's letter against the gold letter."""
    letter = choice_letter(completion)
    if letter is None:
        return _missing(completion, 1)
    if letter == gold:
        return AnswerCheck(ANSWERED, letter, Verdict(True, None, "", 1, 1))
    return AnswerCheck(ANSWERED, letter,
                       Verdict(False, "wrong_answer", f"answered {letter}, expected {gold}", 0, 1))


# -- prompts ------------------------------------------------------------------------------------
def math_messages(problem: str) -> list[dict[str, str]]:
    """AIME: the problem, then the boxed-answer instruction, as the only user turn."""
    return [{"role": "user", "content": f"{problem.strip()}\n\n{BOXED_INSTRUCTION}"}]


def choice_block(question: str, choices: list[str]) -> str:
    """A question and its lettered choices, as the original MMLU harness lays them out."""
    lines = [question.strip(), *(f"{letter}. {choice}" for letter, choice
                                 in zip(LETTERS, choices, strict=True))]
    return "\n".join(lines)


def mmlu_messages(block: str, subject: str,
                  shots: list[tuple[str, str]] | None = None) -> list[dict[str, str]]:
    """MMLU as one user turn: zero-shot, the question (``choice_block``) and the instruction;
    with ``shots`` ((block, gold letter) of the subject's dev examples), the original harness's
    header and solved examples come first."""
    parts = []
    if shots:
        parts.append(MMLU_FEW_SHOT_HEADER.format(subject.replace("_", " ")))
        parts += [f"{example}\nAnswer: {letter}" for example, letter in shots]
    parts += [block, MMLU_INSTRUCTION]
    return [{"role": "user", "content": "\n\n".join(parts)}]
