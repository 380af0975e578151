"""What ``eval.format`` means beyond LiveCodeBench: the out-of-domain sets of the paper's Table 5.

Each new format is a ``Task``: how its problems load (from ``eval.path``, a file or a hub id),
the chat messages a problem is asked with, and how a completion is judged:

* ``aime`` (AIME, 30 a year): the problem and "Please reason step by step, and put your final
  answer within \\boxed{}."; the last ``\\boxed{}`` equal by value to the gold answer
  (math-verify); nothing runs.
* ``mmlu`` (MMLU test, 14,042 questions in 57 subjects): zero-shot chain of thought ending
  "Answer: X" (``eval.shots=5``: the subject's dev examples first); the letter read from the
  reply equal to the gold one; nothing runs.
* ``humaneval_sh`` (MultiPL-E's HumanEval in bash, 158): prompt and program from
  ``ssd.evaluation.shell``; prompt + completion + tests run by bash in the sandbox, exit 0.
* ``cruxeval_input`` / ``cruxeval_output`` (CruxEval, 800): ``ssd.evaluation.cruxeval``; the
  assertion ``f(input) == output`` run in the sandbox.

Formats without a Task here (``lcb``, ``lcb_offline``, ``humaneval``, ``lab``) keep their own
loaders (``ssd.evaluation.run.load_problems``), prompts (``ssd.evaluation.prompts``) and checks.

An answer task's judge returns the verdict and what the result record adds (answer class,
answer read, MMLU's subject) with nothing executed; a program task's turns a completion into
the whole program that ``Evaluator.check`` runs, passing on exit status 0, or says why there is
none (recorded as a ``no_code`` failure with that reason: no code block, an output prediction
that calls ``f``, ...).
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.config import require
from ssd.evaluation.answers import (
    LETTERS,
    AnswerCheck,
    choice_answer,
    choice_block,
    math_answer,
    math_messages,
    mmlu_messages,
)
from ssd.evaluation.benchmarks import BuiltProgram, Problem
from ssd.evaluation.checking import Verdict
from ssd.evaluation.cruxeval import build_cruxeval_program, cruxeval_messages, load_cruxeval
from ssd.evaluation.prompts import eval_messages
from ssd.evaluation.shell import (
    build_humaneval_sh_program,
    humaneval_sh_messages,
    load_humaneval_sh,
)
from ssd.identity import input_identity

Messages = list[dict[str, str]]
HUB_PREFIX = "hub:"
MMLU_SHOTS = (0, 5)


@dataclass(frozen=True)
class Task:
    """One ``eval.format``: loader, prompt, judge (see the module docstring)."""

    format: str
    load: Callable[[DictConfig], list[Problem]]              # the eval group -> problems
    prompter: Callable[[DictConfig], Callable[[Problem], Messages]]
    answer: Callable[[Problem, str], tuple[Verdict, dict[str, Any]]] | None = None
    program: Callable[[Problem, str], BuiltProgram] | None = None
    # Part of a sampled run's identity: bump when the task's prompt wording changes.
    prompt_version: int = 1


# -- reading rows ---------------------------------------------------------------------------------
def read_rows(path: str, split: str = "test") -> list[dict[str, Any]]:
    """The rows of a benchmark: ``.jsonl`` (``.gz`` too) or ``hub:<repo>[:<config>]`` (the hub
    set's ``split``, through ``datasets``; needs a network or a warm cache). Keys lowercased, as
    hub copies spell the same fields in either case."""
    if path.startswith(HUB_PREFIX):
        import datasets  # heavy; only for users with network access

        repo, _, name = path[len(HUB_PREFIX):].partition(":")
        rows = datasets.load_dataset(repo, name or None, split=split)
    else:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    return [{str(k).lower(): v for k, v in row.items()} for row in rows]


def _problem(question_id: str, content: str, platform: str, gold: str,
             group: str | None = None) -> Problem:
    """An answer task's problem: the gold answer is its ``reference``; ``group`` (MMLU's
    subject) is its difficulty label, so pass@k per difficulty and the bootstrap's scopes are
    per subject."""
    return Problem(question_id=question_id, title=question_id, content=content,
                   platform=platform, contest_date=None, difficulty=group, starter_code="",
                   tests=[], func_name=None, reference=gold, source=platform)


# -- AIME -----------------------------------------------------------------------------------------
def load_aime(path: str) -> list[Problem]:
    """Rows {id, problem, answer} (matharena's and Qwen2.5-Math's copies; the answer as text)."""
    return [_problem(str(row["id"]), str(row["problem"]), "aime", str(row["answer"]).strip())
            for row in read_rows(path)]


def _aime_judge(problem: Problem, completion: str) -> tuple[Verdict, dict[str, Any]]:
    assert problem.reference is not None
    check = math_answer(problem.reference, completion)
    return check.verdict, check.fields()


# -- MMLU -----------------------------------------------------------------------------------------
def _gold_letter(answer: Any) -> str:
    """The ``answer`` field as a letter: an index 0-3 (the ``cais/mmlu`` layout) or a letter."""
    return LETTERS[answer] if isinstance(answer, int) else str(answer).strip().upper()


def load_mmlu(path: str) -> list[Problem]:
    """Rows {subject, question, choices, answer}; ids ``<subject>/<position in the subject>``."""
    seen: dict[str, int] = defaultdict(int)
    problems = []
    for row in read_rows(path):
        subject = str(row["subject"])
        problems.append(_problem(f"{subject}/{seen[subject]}",
                                 choice_block(row["question"], list(row["choices"])), "mmlu",
                                 _gold_letter(row["answer"]), subject))
        seen[subject] += 1
    return problems


def mmlu_shots(path: str, shots: int) -> dict[str, list[tuple[str, str]]]:
    """The first ``shots`` dev examples of each subject: (question block, gold letter)."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in read_rows(path, split="dev"):
        if len(found[row["subject"]]) < shots:
            found[row["subject"]].append((choice_block(row["question"], list(row["choices"])),
                                          _gold_letter(row["answer"])))
    return found


def _mmlu_prompter(e: DictConfig) -> Callable[[Problem], Messages]:
    examples = mmlu_shots(e.shots_path, e.shots) if e.shots else {}

    def messages(problem: Problem) -> Messages:
        subject = problem.difficulty or ""
        return mmlu_messages(problem.content, subject, examples.get(subject))

    return messages


def _mmlu_judge(problem: Problem, completion: str) -> tuple[Verdict, dict[str, Any]]:
    assert problem.reference is not None
    check: AnswerCheck = choice_answer(problem.reference, completion)
    return check.verdict, {**check.fields(), "subject": problem.difficulty}


# -- the program tasks (ssd.evaluation.shell, ssd.evaluation.cruxeval) ---------------------------
def _crux_task(mode: str) -> Task:
    return Task(f"cruxeval_{mode}", load=lambda e: load_cruxeval(e.path, mode),
                prompter=lambda e: cruxeval_messages, program=build_cruxeval_program)


TASKS: dict[str, Task] = {
    "aime": Task("aime", load=lambda e: load_aime(e.path),
                 prompter=lambda e: lambda p: math_messages(p.content), answer=_aime_judge),
    "mmlu": Task("mmlu", load=lambda e: load_mmlu(e.path), prompter=_mmlu_prompter,
                 answer=_mmlu_judge),
    "humaneval_sh": Task("humaneval_sh", load=lambda e: load_humaneval_sh(e.path),
                         prompter=lambda e: humaneval_sh_messages,
                         program=build_humaneval_sh_program),
    "cruxeval_input": _crux_task("input"),
    "cruxeval_output": _crux_task("output"),
}


def task_of(e: DictConfig) -> Task | None:
    """The Task of the eval group's format; None for the LiveCodeBench-side formats."""
    return TASKS.get(e.format)


def is_source(path: Any) -> bool:
    """An existing file, or a hub id (checked when it is read)."""
    return isinstance(path, str) and (path.startswith(HUB_PREFIX) or Path(path).is_file())


def check_task_keys(cfg: DictConfig) -> None:
    """The keys only some tasks read, checked with the rest of the eval group."""
    if cfg.eval.format == "mmlu":
        shots = require(cfg, "eval.shots", lambda v: v in MMLU_SHOTS,
                        "0 (zero-shot chain of thought) or 5 (the original harness's dev "
                        "examples of the subject first)")
        if shots:
            require(cfg, "eval.shots_path", is_source, "an existing MMLU dev .jsonl, or "
                    "hub:cais/mmlu:all (the few-shot examples, read with eval.shots=5)")


def task_values(e: DictConfig) -> tuple[dict[str, str | None], dict[str, Any]]:
    """What a task adds to a run's identity: (inputs as content, values): its prompt version,
    and MMLU's few-shot setting and examples file."""
    task = TASKS[e.format]
    values: dict[str, Any] = {"task_prompt_version": task.prompt_version}
    inputs: dict[str, str | None] = {}
    if e.format == "mmlu":
        values["eval.shots"] = e.shots
        if e.shots:
            inputs["shots"] = input_identity(e.shots_path)
    return inputs, values


def messages_for(e: DictConfig) -> Callable[[Problem], Messages]:
    """How the eval group's problems are asked: its task's prompt, else the code prompts."""
    task = task_of(e)
    return task.prompter(e) if task is not None else eval_messages
