"""Grader profiles (``eval.grader``): whose verdict semantics score a completion.

* ``default``: the project's own: LiveCodeBench's rules where they are sound, real stdin/stdout
  file descriptors, results compared as plain JSON values, CommonMark fences after reasoning.
* ``lcb``: upstream LiveCodeBench's verdicts (lcb_runner/evaluation/testing_util.py), quirks
  included: its extraction, its stdin mock, its ``==``, its argument parsing.
* ``ml_ssd``: the paper's released evaluator (apple/ml-ssd evaluation/livecodebench_utils.py and
  benchmark.py): private tests only, a suite budget but no per-test limit, ``str()`` comparison,
  its own argument parser and prelude.

All three run the program in the sandbox and compare in the trusted process, so none trusts a
candidate's objects: a forged ``__eq__`` fails under every profile (upstream it would pass).
Check-script problems (HumanEval, LeetCode ``check(candidate)``) have no reference semantics
here and are graded the project's way under every profile. ../shared/graders.md lists the
references' behaviour row by row; the README's grader table lists every difference and its effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssd.evaluation.checking import (
    PROJECT_CALL_RULES,
    CallRules,
    call_result_equals,
    call_result_str_matches,
    parse_call_input_lcb,
    parse_call_input_ml_ssd,
    parse_expected_ml_ssd,
    parse_json,
)
from ssd.evaluation.extraction import (
    Extraction,
    extract_code,
    extract_code_lcb,
    extract_code_ml_ssd,
)


@dataclass(frozen=True)
class GraderProfile:
    name: str
    summary: str
    extract: Callable[[str], Extraction]
    call_rules: CallRules
    private_tests_only: bool  # run the row's private tests alone (none: the sample fails)
    per_test_limit: bool  # each test (and loading the program) under eval.time_limit_s
    io: str  # the sandbox harness's input/output emulation: "real", "lcb" or "ml_ssd"
    prelude: bool | str  # True: LiveCodeBench's star imports; "ml_ssd": the paper evaluator's
    recursion_limit: int
    int_max_str_digits: int  # the program's int->str limit; 0: none
    # Source-text markers that make a call-based program "a Solution class"; None: whether
    # `Solution` is a class after running it.
    solution_markers: tuple[str, ...] | None
    fresh_module: bool  # run the program's module again for every test
    module_name: str | None  # __name__ of a call-based program's module (None: unset)
    preload: tuple[str, ...] = ()  # modules the sandbox template imports for the prelude

    def job_settings(self) -> dict[str, Any]:
        """What the in-sandbox harness needs to know (ssd/sandbox/_harness.py)."""
        return {"io": self.io, "prelude": self.prelude, "recursion_limit": self.recursion_limit,
                "int_max_str_digits": self.int_max_str_digits,
                "solution_markers": self.solution_markers, "fresh_module": self.fresh_module,
                "module_name": self.module_name}


PROFILES: dict[str, GraderProfile] = {
    "default": GraderProfile(
        name="default",
        summary="the project's own semantics (LiveCodeBench's rules where sound)",
        extract=extract_code, call_rules=PROJECT_CALL_RULES, private_tests_only=False,
        per_test_limit=True, io="real", prelude=True, recursion_limit=50_000,
        int_max_str_digits=0, solution_markers=None, fresh_module=False,
        module_name="solution"),
    "lcb": GraderProfile(
        name="lcb",
        summary="upstream LiveCodeBench's verdicts (lcb_runner testing_util.py)",
        extract=extract_code_lcb,
        call_rules=CallRules(parse_call_input_lcb, parse_json, call_result_equals),
        private_tests_only=False, per_test_limit=True, io="lcb", prelude=True,
        recursion_limit=50_000, int_max_str_digits=50_000, solution_markers=("class Solution",),
        fresh_module=False, module_name="tmp_sol"),
    "ml_ssd": GraderProfile(
        name="ml_ssd",
        summary="the paper's released evaluator (apple/ml-ssd livecodebench_utils.py)",
        extract=extract_code_ml_ssd,
        call_rules=CallRules(parse_call_input_ml_ssd, parse_expected_ml_ssd,
                             call_result_str_matches, compares_str=True),
        private_tests_only=True, per_test_limit=False, io="ml_ssd", prelude="ml_ssd",
        recursion_limit=1_000, int_max_str_digits=4_300,
        solution_markers=("class Solution:", "class Solution("), fresh_module=True,
        module_name=None, preload=("numpy", "pandas")),
}
