"""Grader profiles: constructed completions on which the three profiles disagree, at least one per
row of ../shared/graders.md, with the verdict each reference would give, argued from its code.

References (read at these commits):
  TU = LiveCodeBench/LiveCodeBench@28fef95 lcb_runner/evaluation/testing_util.py
  CG = same, lcb_runner/evaluation/compute_code_generation_metrics.py
  EX = same, lcb_runner/utils/extraction_utils.py
  BG = same, lcb_runner/benchmarks/code_generation.py
  LU = apple/ml-ssd@15c4292 evaluation/livecodebench_utils.py
  BM = same, evaluation/benchmark.py
Every program runs in the sandbox under every profile; only the semantics change.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ssd.config import ConfigError
from ssd.evaluation import Evaluator, Problem, Test, run_evaluation
from ssd.evaluation.checking import (
    call_result_equals,
    call_result_matches,
    call_result_str_matches,
    parse_call_input_ml_ssd,
    str_shows_subclass,
)
from ssd.evaluation.extraction import extract_code, extract_code_lcb, extract_code_ml_ssd
from ssd.evaluation.graders import PROFILES
from ssd.sandbox import codec
from tests.conftest import compose

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
TIME_LIMIT_S = 1.0  # per test; the suite budget is then (1 + 1) * tests + 5 seconds


@pytest.fixture(scope="module")
def evaluators() -> Iterator[dict[str, Evaluator]]:
    built = {name: Evaluator(workers=2, time_limit_s=TIME_LIMIT_S, memory_mb=1024,
                             profile=profile) for name, profile in PROFILES.items()}
    yield built
    for evaluator in built.values():
        evaluator.close()


def stdin(*pairs: tuple[str, str], public: int = 0) -> Problem:
    """A stdin problem; by default every test is private (the ml_ssd profile runs those only)."""
    return Problem("s", "s", "", "atcoder", None, None, "",
                   [Test(i, o, "stdin") for i, o in pairs], None, public_tests=public)


def call(func: str, *pairs: tuple[str, str], public: int = 0) -> Problem:
    return Problem("c", "c", "", "leetcode", None, None, "",
                   [Test(i, o, "functional") for i, o in pairs], func, public_tests=public)


def fenced(code: str, tag: str = "python") -> str:
    return f"Here it is.\n\n```{tag}\n{code}```\n"


SUM = stdin(("1 2\n", "3\n"))


@dataclass(frozen=True)
class Case:
    row: str  # graders.md row (or "extra": a reference behaviour graders.md does not list)
    problem: Problem
    response: str
    passes: dict[str, bool]  # profile -> verdict

    def __str__(self) -> str:
        return self.row


def verdicts(default: bool, lcb: bool, ml_ssd: bool) -> dict[str, bool]:
    return {"default": default, "lcb": lcb, "ml_ssd": ml_ssd}


CASES = {
    # 1 which tests. LCB grades public + private in that order (BG:106-121); ml_ssd keeps
    # "test": private_test_cases (LU:298), so a program wrong on the public test alone passes.
    "1 public test wrong, private right": Case(
        "1", stdin(("7\n", "public\n"), ("8\n", "8\n"), public=1),
        fenced("print(input())\n"), verdicts(False, False, True)),
    # ... and a problem without private tests: lcb_run returns no results, which pass@k counts
    # as all failed (BM:308-320), even for a right program.
    "1 no private tests": Case(
        "1", stdin(("1 2\n", "3\n"), public=1),
        fenced("a, b = map(int, input().split())\nprint(a + b)\n"), verdicts(True, True, False)),
    # 2 time. LCB arms a 6 s alarm around each test (TU:254, TU:334); ml_ssd only joins the
    # whole run after (6 + 1) * N + 5 s (LU:708). One test 1.5x the limit, the suite well inside.
    "2 one slow test inside the suite budget": Case(
        "2", stdin(("1\n", "1\n"), ("2\n", "2\n")),
        fenced(f"import time\nn = input()\nif n == '1':\n    time.sleep({1.5 * TIME_LIMIT_S})\n"
               "print(n)\n"), verdicts(False, False, True)),
    # 3 call-based compare. LCB: `prediction == gt_out` on json.loads'd outputs, a top-level
    # tuple made a list (TU:249, TU:265-268). ml_ssd: str() of both, then the line/Decimal rule
    # (LU:549-553, LU:158-195).
    "3 string '6' for 6": Case("3", call("f", ("1", "6")), fenced("def f(x):\n    return '6'\n"),
                               verdicts(False, False, True)),
    "3 [2.0] for [2]": Case("3", call("f", ("1", "[2]")), fenced("def f(x):\n    return [2.0]\n"),
                            verdicts(True, True, False)),
    "3 True for 1": Case("3", call("f", ("1", "1")), fenced("def f(x):\n    return True\n"),
                         verdicts(True, True, False)),
    "3 dict in another order": Case(
        "3", call("f", ("1", '{"a": 1, "b": 2}')),
        fenced("def f(x):\n    return {'b': 2, 'a': 1}\n"), verdicts(True, True, False)),
    # A nested tuple: the project compares JSON values (a tuple is a list in JSON); LCB only
    # converts the top level, and (1, 2) != [1, 2]; ml_ssd's str() shows parentheses.
    "3 nested tuple": Case("3", call("f", ("1", "[[1, 2]]")),
                           fenced("def f(x):\n    return [(1, 2)]\n"),
                           verdicts(True, False, False)),
    # 4 call arguments. LCB json.loads each line (TU:246); ml_ssd's parser (LU:630-646) passes
    # `true` on as the string "true"; an input with "=" becomes name=value pairs (LU:617-628).
    "4 true arrives as a string": Case(
        "4", call("f", ("true", "true")), fenced("def f(x):\n    return x is True\n"),
        verdicts(True, True, False)),
    "4 an argument containing '='": Case(
        "4", call("f", ('"a=b"', '"a=b"')), fenced("def f(s):\n    return s\n"),
        verdicts(True, True, False)),
    # 5 prelude. LCB star-imports math, collections, ... and sets the recursion limit to 50000
    # (TU:27); ml_ssd names a fixed list plus numpy and pandas and keeps the limit 1000 (LU:28-60).
    "5 factorial without an import": Case(
        "5", SUM, fenced("print(factorial(3) // 2)\n"), verdicts(True, True, False)),
    "5 np without an import": Case(
        "5", SUM, fenced("print(np.sum([int(v) for v in input().split()]))\n"),
        verdicts(False, False, True)),
    "5 recursion 1500 deep": Case(
        "5", stdin(("1500\n", "1500\n")),
        fenced("def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
               "print(depth(int(input())))\n"), verdicts(True, True, False)),
    # 6 big ints. LCB raises the int->str limit to 50000 digits (CG:7); ml_ssd keeps 4300, so
    # printing (or str() of) a 5000-digit int raises.
    "6 printing a 5000-digit int": Case(
        "6", stdin(("5000\n", "7" * 5000 + "\n")), fenced("print(int('7' * int(input())))\n"),
        verdicts(True, True, False)),
    "6 returning a 5000-digit int": Case(
        "6", call("f", ("5000", "7" * 5000)), fenced("def f(n):\n    return int('7' * n)\n"),
        verdicts(True, True, False)),
    # 7 exit(). LCB swallows SystemExit around the program (TU:176) and leaves exit alone
    # (TU:539 is commented out); ml_ssd sets builtins.exit = None (LU:215): a TypeError.
    "7 exit() after printing": Case(
        "7", SUM, fenced("a, b = map(int, input().split())\nprint(a + b)\nexit()\n"),
        verdicts(True, True, False)),
    # The project counts a nonzero exit status as a failure; LCB swallows any SystemExit.
    "7 exit(1) after printing": Case(
        "7", SUM, fenced("import sys\na, b = map(int, input().split())\nprint(a + b)\n"
                         "sys.exit(1)\n"), verdicts(False, True, True)),
    # 8 `for line in sys.stdin`: LCB's mock has no __iter__ (TU:74-91): a TypeError; ml_ssd's
    # has one (LU:119-125).
    "8 for line in sys.stdin": Case(
        "8", SUM, fenced("import sys\nfor line in sys.stdin:\n"
                         "    a, b = map(int, line.split())\n    print(a + b)\n"),
        verdicts(True, False, True)),
    # 9 open(0): LCB's prelude binds `open` (from io/builtins import *, TU:27) before it patches
    # builtins.open (TU:167), so the real, empty stdin is read; ml_ssd's prelude does not, and
    # its patched open returns the input (LU:468).
    "9 open(0).read()": Case(
        "9", SUM, fenced("a, b = map(int, open(0).read().split())\nprint(a + b)\n"),
        verdicts(True, False, True)),
    # 10 extraction. LCB: the lines between the last two lines containing ``` (EX:13-17), any
    # tag; ml_ssd: the last match of a fence with a letters-only tag (BM:45), so ```python3 is
    # not found.
    "10 a python3 block": Case(
        "10", SUM, fenced("a, b = map(int, input().split())\nprint(a + b)\n", tag="python3"),
        verdicts(True, True, False)),
    # The project ends a block only at a fence line (CommonMark); LCB cuts at any line holding
    # ``` (here inside a string), leaving a broken program.
    "10 backticks inside the code": Case(
        "10", stdin(("\n", "```\n")), fenced('print("```")\n'), verdicts(True, False, False)),
    # 11 stdout compare: the same rule in all three (TU:370-423, LU:158-195): by line, exact or
    # equal as Decimals, so all agree.
    "11 1.50 for 1.5": Case("11", stdin(("\n", "1.5\n")), fenced("print('1.50')\n"),
                            verdicts(True, True, True)),
    # 12 <think> is not stripped by either reference: code sketched while thinking counts when
    # the answer has no block; the project removes reasoning first.
    "12 code only inside <think>": Case(
        "12", SUM, "<think>\n" + fenced("a, b = map(int, input().split())\nprint(a + b)\n")
        + "</think>\nThe program above adds the numbers.", verdicts(False, True, True)),
    # 13 memory: neither reference limits it, but every profile here runs in the sandbox, whose
    # memory limit stays (a documented difference: the references would pass this).
    "13 allocating past the sandbox's memory": Case(
        "13", SUM, fenced("block = bytearray(2 * 1024 ** 3)\nprint(3)\n"),
        verdicts(False, False, False)),
    # extra: both runners make the program's top level the body of `wrapped_function`
    # (TU:122-151, LU:376-412), so `global total` in a nested function misses the local `total`.
    "extra: module body wrapped in a function": Case(
        "extra", SUM, fenced("total = 0\ndef add(v):\n    global total\n    total += v\n"
                             "for v in map(int, input().split()):\n    add(v)\nprint(total)\n"),
        verdicts(True, False, False)),
    # extra: top-level imports are hoisted to module level and run before stdin is patched
    # (TU:142-148): `from sys import stdin` binds the real, empty stdin.
    "extra: from sys import stdin": Case(
        "extra", SUM, fenced("from sys import stdin\na, b = map(int, stdin.readline().split())\n"
                             "print(a + b)\n"), verdicts(True, False, False)),
    # extra: stdout is a StringIO (TU:59-70, LU:65-81), which has no buffer.
    "extra: sys.stdout.buffer": Case(
        "extra", SUM, fenced("import sys\na, b = map(int, input().split())\n"
                             "sys.stdout.buffer.write(f'{a + b}\\n'.encode())\n"),
        verdicts(True, False, False)),
    # extra: the patched readline is next() over the input's pieces (TU:169, LU:470): past the
    # end it raises StopIteration instead of returning "".
    "extra: readline past the end": Case(
        "extra", stdin(("1\n2", "3\n")),
        fenced("import sys\ntotal = 0\nwhile True:\n    line = sys.stdin.readline()\n"
               "    if not line:\n        break\n    total += int(line)\nprint(total)\n"),
        verdicts(True, False, False)),
    # extra: ml_ssd executes the program and builds a new Solution for every test (LU:519, 530);
    # LCB builds one instance for all (TU:202), as the project does.
    "extra: state kept across tests": Case(
        "extra", call("f", ("0", "1"), ("0", "1")),
        fenced("class Solution:\n    def __init__(self):\n        self.calls = 0\n"
               "    def f(self, x):\n        self.calls += 1\n        return self.calls\n"),
        verdicts(False, False, True)),
    # extra: LCB decides "a Solution class" by the text "class Solution" (TU:197); ml_ssd by
    # "class Solution:" or "class Solution(" (LU:522).
    "extra: 'class Solution' in a comment": Case(
        "extra", call("f", ("1", "1")), fenced("def f(x):  # no class Solution here\n"
                                                "    return x\n"), verdicts(True, False, True)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_profiles_reproduce_each_reference(evaluators: dict[str, Evaluator], name: str) -> None:
    case = CASES[name]
    got = {profile: ev.check_response(case.problem, case.response).passed
           for profile, ev in evaluators.items()}
    assert got == case.passes


def test_every_graders_md_row_has_a_case() -> None:
    assert {c.row for c in CASES.values()} >= {str(row) for row in range(1, 14)}
    # ... on which the profiles disagree, except where a row says the references agree (11)
    # or the sandbox overrides both (13).
    for name, case in CASES.items():
        assert len(set(case.passes.values())) == 2 or case.row in ("11", "13"), name


FORGED = """class Anything:
    def __eq__(self, other):
        return True
    def __str__(self):
        return "6"
    __repr__ = __str__
def f(x):
    return Anything()
"""


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_forged_eq_fails_under_every_profile(evaluators: dict[str, Evaluator],
                                               profile: str) -> None:
    # Upstream LCB would pass it (its `==` is the object's own, TU:268), and so would ml_ssd
    # (its str() is the object's own, LU:549); here the object never leaves the sandbox.
    verdict = evaluators[profile].check_response(call("f", ("1", "6")), fenced(FORGED))
    assert not verdict.passed and verdict.reason == "wrong_answer"


# The standard library's dict and tuple subclasses, returned where a dict or a list is expected.
# LCB compares with `==` after a top-level tuple (`isinstance`, so a named tuple too) becomes a
# list (TU:265-268): a Counter equals its dict, a nested tuple never equals a list. ml_ssd compares
# `str()` after the same conversion (LU:549-553): "Counter({'a': 2})" is not "{'a': 2}".
NAMED = "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
SUBCLASS_RESULTS = {
    "Counter": ("from collections import Counter\ndef f(x):\n    return Counter('aab')\n",
                '{"a": 2, "b": 1}', verdicts(True, True, False)),
    "OrderedDict": ("from collections import OrderedDict\n"
                    "def f(x):\n    return OrderedDict([('a', 2), ('b', 1)])\n",
                    '{"a": 2, "b": 1}', verdicts(True, True, False)),
    "defaultdict": ("from collections import defaultdict\ndef f(x):\n    d = defaultdict(int)\n"
                    "    d['a'] += 2\n    d['b'] += 1\n    return d\n",
                    '{"a": 2, "b": 1}', verdicts(True, True, False)),
    "named tuple": (NAMED + "def f(x):\n    return P(1, 2)\n", "[1, 2]",
                    verdicts(True, True, True)),
    "typing.NamedTuple": ("from typing import NamedTuple\nclass P(NamedTuple):\n    x: int\n"
                          "    y: int\ndef f(x):\n    return P(1, 2)\n", "[1, 2]",
                          verdicts(True, True, True)),
    "named tuple in a list": (NAMED + "def f(x):\n    return [P(1, 2)]\n", "[[1, 2]]",
                              verdicts(True, False, False)),
    "Counter in a list": ("from collections import Counter\ndef f(x):\n    return [Counter('a')]\n",
                          '[{"a": 1}]', verdicts(True, True, False)),
    # Read through the base type: the candidate's overrides never run, under any profile.
    "forged named tuple": (NAMED + "class Q(P):\n    def __eq__(self, other):\n"
                           "        return True\n"
                           "    def __iter__(self):\n        return iter([1, 2])\n"
                           "def f(x):\n    return Q(0, 0)\n", "[1, 2]",
                           verdicts(False, False, False)),
    "a dict subclass of the candidate's": (
        "class D(dict):\n    pass\ndef f(x):\n    return D(a=2, b=1)\n", '{"a": 2, "b": 1}',
        verdicts(False, False, False)),
}


@pytest.mark.parametrize("name", list(SUBCLASS_RESULTS))
def test_standard_library_subclasses(evaluators: dict[str, Evaluator], name: str) -> None:
    code, expected, passes = SUBCLASS_RESULTS[name]
    got = {profile: ev.check_response(call("f", ("1", expected)), fenced(code)).passed
           for profile, ev in evaluators.items()}
    assert got == passes


# -- the pure rules -------------------------------------------------------------------------------
def test_subclasses_cross_as_plain_values_with_their_type_name() -> None:
    point = namedtuple("Point", "x y")
    counts = Counter("aab")
    encoded = codec.encode_value([counts, point(1, 2)])
    decoded = codec.decode_value(encoded)
    assert decoded == [{"a": 2, "b": 1}, (1, 2)]
    assert [type(v) for v in decoded] == [dict, tuple]
    assert str_shows_subclass(encoded) == "Counter"
    assert str_shows_subclass(codec.encode_value(point(1, 2))) is None  # becomes a list first
    assert str_shows_subclass(codec.encode_value((point(1, 2),))) == "Point"
    assert str_shows_subclass(codec.encode_value({"k": OrderedDict()})) == "OrderedDict"
    assert str_shows_subclass(codec.encode_value([{"a": (1, 2)}])) is None
    for value in (type("D", (dict,), {})(), type("C", (Counter,), {})()):
        with pytest.raises(codec.Unencodable):
            codec.encode_value(value)


def test_ml_ssd_argument_parser() -> None:
    assert parse_call_input_ml_ssd('[1, 2]\n"ab"\n3\n2.5\ntrue\n{"k": 1}') == [
        [1, 2], "ab", 3, 2.5, "true", '{"k": 1}']
    assert parse_call_input_ml_ssd("n = 3, s = \"x\"") == [3, "x"]
    with pytest.raises(ValueError):
        parse_call_input_ml_ssd("nums = [1, 2]")  # "2]" holds no "="


@pytest.mark.parametrize(("expected", "result", "project", "lcb", "ml_ssd"), [
    (6, "6", False, False, True),
    ([2], [2.0], True, True, False),
    (1, True, True, True, False),
    ([[1, 2]], [(1, 2)], True, False, False),
    ([1, 2], (1, 2), True, True, True),
    ({"a": 1}, {1: "a"}, False, False, False),
    (" x", "x", False, False, True),  # ml_ssd strips lines
])
def test_call_comparisons(expected: object, result: object, project: bool, lcb: bool,
                          ml_ssd: bool) -> None:
    assert (call_result_matches(expected, result), call_result_equals(expected, result),
            call_result_str_matches(expected, result)) == (project, lcb, ml_ssd)


def test_extraction_rules() -> None:
    two = "```python\na = 1\n```\nthen\n```python\nb = 2\n```\n"
    assert extract_code(two).code == extract_code_lcb(two).code == "b = 2\n"
    assert extract_code_ml_ssd(two).code == "b = 2\n"
    assert extract_code_lcb("no fences").reason == "no_code_block"
    assert extract_code_ml_ssd("```python3\nx = 1\n```").code is None


# -- evaluate.py: one key, in the identity, no model needed -----------------------------------
def test_grader_is_part_of_the_run_identity() -> None:
    from ssd.evaluation.run import run_identity

    identities = {run_identity(compose("evaluate", ["model=tiny", f"eval.grader={name}"]))
                  for name in PROFILES}
    assert len(identities) == len(PROFILES)
    with pytest.raises(ConfigError, match=r"^eval\.grader=lcb6: must be one of default, lcb, "):
        run_evaluation(compose("evaluate", ["eval=lcb_sample", "eval.grader=lcb6"]))


def test_rescoring_completions_under_another_profile(tmp_path: Path) -> None:
    """Existing completions scored under each profile (eval.completions=: no engine): the
    verdicts differ where the rules do, and every record names its grader."""
    rows = [json.loads(line) for line in (FIXTURES / "official_sample.jsonl").open()]
    solutions = json.loads((FIXTURES / "solutions.json").read_text())["official"]
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps({
        "question_id": row["question_id"], "sample_index": 0,
        "completion": fenced(solutions[row["question_id"]]["correct"], tag="python3")}) + "\n"
        for row in rows))
    passed = {}
    for name in PROFILES:
        out = run_evaluation(compose("evaluate", [
            "eval=lcb_v6", f"eval.path={FIXTURES / 'official_sample.jsonl'}",
            "eval.problem_set=null", f"eval.completions={completions}", "eval.ks=[1]",
            f"eval.grader={name}", "logger=none", "progress=false",
            f"output_dir={tmp_path}/{name}"]))
        metrics = json.loads((out / "metrics.json").read_text())
        results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        assert metrics["grader"]["name"] == name and {r["grader"] for r in results} == {name}
        passed[name] = metrics["passed"]
    # Correct programs in ```python3 blocks: ml_ssd's extraction finds none of them.
    assert passed == {"default": 5, "lcb": 5, "ml_ssd": 0}
