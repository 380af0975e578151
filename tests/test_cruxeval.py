"""CruxEval (ssd/evaluation/cruxeval.py): loading, prompts, answer extraction, the official
program, and the oracles in the sandbox: gold answers 800/800 in each mode, `None` 0/800, and an
output answer that calls `f` rejected without running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ssd.evaluation import Evaluator, Problem
from ssd.evaluation.cruxeval import (
    answer_text,
    build_cruxeval_program,
    cruxeval_messages,
    cruxeval_program,
    load_cruxeval,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "transfer" / "cruxeval"
PATH = DATA / "cruxeval.jsonl"


@pytest.fixture(scope="module")
def sets() -> dict[str, list[Problem]]:
    return {mode: load_cruxeval(PATH, mode) for mode in ("input", "output")}


@pytest.fixture(scope="module")
def ev() -> Iterator[Evaluator]:
    with Evaluator(workers=4, time_limit_s=3.0) as evaluator:  # the official 3 s
        yield evaluator


def tagged(answer: str) -> str:
    return f"[ANSWER]\n{answer}\n[/ANSWER]"


def gold(problem: Problem) -> str:
    test = problem.tests[0]
    return tagged(f"assert f({test.input}) == {test.output}")


# -- loading and prompts --------------------------------------------------------------------------
def test_the_set(sets: dict[str, list[Problem]]) -> None:
    for mode, problems in sets.items():
        assert [p.question_id for p in problems] == [f"sample_{i}" for i in range(800)]
        assert {(p.kind, p.program_language) for p in problems} == {("program", "python")}
        assert problems[0].platform == f"cruxeval_{mode}"
    assert (DATA / "LICENSE").read_text().startswith("MIT License")
    with pytest.raises(ValueError, match="mode"):
        load_cruxeval(PATH, "both")


def test_messages(sets: dict[str, list[Problem]]) -> None:
    (_, user_in), (_, user_out) = (cruxeval_messages(sets[m][2]) for m in ("input", "output"))
    code = sets["input"][2].content
    assert code in user_in["content"] and code in user_out["content"]
    assert "assert f(??) == 'hbtofdeiequ'\n[/PYTHON]" in user_in["content"]
    assert "assert f('hbtofdeiequ') == ??\n[/PYTHON]" in user_out["content"]
    assert "[ANSWER]" in user_in["content"] and "[/ANSWER]" in user_out["content"]


# -- extraction and the program (pure) -----------------------------------------------------------
@pytest.mark.parametrize(("response", "answer"), [
    ("[ANSWER]\nassert f(1) == 2\n[/ANSWER]", "assert f(1) == 2"),
    ("Thinking... [ANSWER] x [/ANSWER] so: [ANSWER]\nassert f(3) == 4", "assert f(3) == 4"),
    ("[ANSWER]\n```python\nassert f(1) == 2\n```\n[/ANSWER]", "assert f(1) == 2"),
    ("f is the identity, so\n```python\nassert f(1) == 1\n```", "assert f(1) == 1"),
    ("<think>[ANSWER]assert f(0) == 0[/ANSWER]</think>[ANSWER]'a'[/ANSWER]", "'a'"),
    ("<think>never finished", None),
    ("The output is 3.", None),
    ("[ANSWER]\n[/ANSWER]", None),
])
def test_answer_text(response: str, answer: str | None) -> None:
    assert answer_text(response) == answer


def test_programs(sets: dict[str, list[Problem]]) -> None:
    crux_in, crux_out = sets["input"][2], sets["output"][2]  # f(text) removes '+' from text
    code = crux_in.content
    assert cruxeval_program(crux_in, tagged("assert f('abc') == 'hbtofdeiequ'")) == (
        code + "\nassert 'hbtofdeiequ' == f('abc')")
    assert cruxeval_program(crux_in, tagged("f('a+b')")) == (
        code + "\nassert 'hbtofdeiequ' == f('a+b')")
    assert cruxeval_program(crux_out, tagged("assert f('hbtofdeiequ') == 'xyz'")) == (
        code + "\nassert 'hbtofdeiequ' == 'xyz'")
    assert cruxeval_program(crux_out, tagged("'xyz'  # done")) == (
        code + "\nassert 'hbtofdeiequ' == 'xyz'")
    rejected = [
        (crux_in, "[1, 2]", "not_a_call"),
        (crux_in, "g('a')", "not_a_call"),
        (crux_in, "assert f('a' == 'b'", "unparsable"),
        (crux_in, "x = f('a')", "unparsable"),
        (crux_out, "assert f('hbtofdeiequ') == f('hbtofdeiequ')", "calls_f"),  # official rule
        (crux_out, "f( 'hbtofdeiequ' )", "calls_f"),  # the call the text check misses
        (crux_out, "str(f('x')) + ''", "calls_f"),
        (crux_out, "no answer here", "unparsable"),
    ]
    for problem, answer, reason in rejected:
        built = build_cruxeval_program(problem, tagged(answer))
        assert (built.program, built.reason) == (None, reason), answer
    assert build_cruxeval_program(crux_out, "I think it is 'x'.").reason == "no_answer"


# -- oracles in the sandbox -----------------------------------------------------------------------
@pytest.mark.slow  # 3,200 sandboxed programs
@pytest.mark.parametrize("mode", ["input", "output"])
def test_gold_answers_pass_and_none_fails(ev: Evaluator, sets: dict[str, list[Problem]],
                                          mode: str) -> None:
    problems = sets[mode]
    programs = [cruxeval_program(p, gold(p)) for p in problems]
    assert programs == [p.reference for p in problems]  # the official program of the gold answer
    assert sum(v.passed for v in ev.check_many(list(zip(problems, programs, strict=True)))) == 800
    nones = [build_cruxeval_program(p, tagged("None")) for p in problems]
    if mode == "input":  # not a call of f: failed without running, as officially
        assert {b.reason for b in nones} == {"not_a_call"}
    else:
        verdicts = ev.check_many([(p, b.program) for p, b in zip(problems, nones, strict=True)])
        assert sum(v.passed for v in verdicts) == 0
        assert {v.reason for v in verdicts} == {"wrong_answer"}


def test_an_output_answer_calling_f_is_rejected(ev: Evaluator,
                                                sets: dict[str, list[Problem]]) -> None:
    problem = sets["output"][0]
    call = f"f({problem.tests[0].input})"
    built = build_cruxeval_program(problem, tagged(f"assert {call} == {call}"))
    assert (built.program, built.reason) == (None, "calls_f")
    # ... which matters: run, the call would pass.
    program = f"{problem.content}\nassert {problem.tests[0].output} == {call}"
    assert ev.check(problem, program).passed


@pytest.mark.parametrize("mode", ["input", "output"])
def test_an_answer_that_ends_the_interpreter_early_fails(ev: Evaluator,
                                                         sets: dict[str, list[Problem]],
                                                         mode: str) -> None:
    """The official harness execs the program, where any exit is an exception: an answer that
    exits with status 0 before the assertion runs must not pass."""
    problem = sets[mode][0]
    escape = "__import__('sys').exit(0)"
    answer = f"f({escape})" if mode == "input" else escape
    built = build_cruxeval_program(problem, tagged(f"assert {answer} == {problem.tests[0].output}"
                                                   if mode == "input" else answer))
    assert built.program is not None
    verdict = ev.check(problem, built.program)
    assert (verdict.passed, verdict.reason) == (False, "runtime_error"), verdict
