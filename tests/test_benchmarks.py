"""Loading problems from the official LCB format, the offline sets, HumanEval and check scripts."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from ssd.evaluation import (
    PROBLEM_SETS,
    Test,
    check_script_to_functional,
    load_check_script_problems,
    load_humaneval,
    load_lcb_jsonl,
    load_lcb_offline,
)
from ssd.evaluation.benchmarks import (
    decode_test_cases,
    func_name_from_starter,
    problem_from_check_script,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
OFFICIAL = FIXTURES / "official_sample.jsonl"


def test_official_rows() -> None:
    problems = {p.question_id: p for p in load_lcb_jsonl(OFFICIAL)}
    assert set(problems) == {"abc900_a", "abc901_b", "3901", "3902", "1999_c"}
    p = problems["3901"]
    assert (p.title, p.platform, p.difficulty) == ("Pair Indices", "leetcode", "medium")
    assert p.contest_date == "2025-04-20T00:00:00"
    assert p.func_name == "pairIndices" and p.kind == "functional"
    assert p.starter_code.startswith("class Solution:")
    # 1 public + 2 private (packed as base64(zlib(pickle(json))))
    assert p.tests == [
        Test("[2, 7, 11, 15]\n9", "[0, 1]", "functional"),
        Test("[3, 2, 4]\n6", "[1, 2]", "functional"),
        Test("[1, 5, 5]\n10", "[1, 2]", "functional"),
    ]
    assert p.public_tests == 1 and p.private_tests == p.tests[1:]
    assert len(problems["abc901_b"].tests) == 3  # private tests as plain JSON
    assert problems["abc900_a"].func_name is None and problems["abc900_a"].kind == "stdin"
    assert len(problems["1999_c"].tests) == 1 and not problems["1999_c"].private_tests


@pytest.mark.parametrize(
    ("window", "ids"),
    [("lcb_v6", {"abc900_a", "3901"}), ("lcb_v5", {"abc901_b", "3902"})],
)
def test_date_windows(window: str, ids: set[str]) -> None:
    assert {p.question_id for p in load_lcb_jsonl(OFFICIAL, PROBLEM_SETS[window])} == ids


def test_window_bounds_are_inclusive(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in OFFICIAL.read_text().splitlines()]
    rows[0]["contest_date"] = "2025-05-31T23:00:00"
    rows[1]["contest_date"] = "2025-02-01T00:00:00"
    rows[2]["contest_date"] = "2025-06-01T00:00:00"
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = {p.question_id for p in load_lcb_jsonl(path, PROBLEM_SETS["lcb_v6"])}
    assert got == {"abc900_a", "abc901_b"}


def test_packed_tests_refuse_anything_but_a_string() -> None:
    cases = [{"input": "1", "output": "2", "testtype": "stdin"}]
    packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()
    assert decode_test_cases(packed) == [Test("1", "2", "stdin")]
    hostile = base64.b64encode(zlib.compress(pickle.dumps(print))).decode()
    with pytest.raises(pickle.UnpicklingError):
        decode_test_cases(hostile)


def test_offline_slice() -> None:
    problems = load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")
    assert len(problems) == 8
    assert len({p.question_id for p in problems}) == 8
    assert all(p.difficulty is None and p.contest_date is None for p in problems)
    stdin = [p for p in problems if p.kind == "stdin"]
    functional = [p for p in problems if p.kind == "functional"]
    assert len(stdin) == 4 and len(functional) == 4
    assert {p.platform for p in stdin} == {"atcoder"}
    assert {p.platform for p in functional} == {"leetcode"}
    assert [p.func_name for p in functional] == [
        "smallestNumber",
        "countSubarrays",
        "minElement",
        "numberOfSubstrings",
    ]
    assert functional[3].tests[0] == Test('"abacb"\n2', "4", "functional")
    # ids are a hash of the statement: stable across loads
    assert [p.question_id for p in load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")] == [
        p.question_id for p in problems
    ]


def test_offline_tests_as_python_literal_string(tmp_path: Path) -> None:
    entries = json.loads((FIXTURES / "lcb_2408_2501_slice.json").read_text())
    for entry in entries:
        entry["tests"] = repr(entry["tests"])
    path = tmp_path / "literal.json"
    path.write_text(json.dumps(entries))
    as_literal = load_lcb_offline(path)
    as_list = load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")
    assert [p.tests for p in as_literal] == [p.tests for p in as_list]


@pytest.mark.parametrize(
    ("starter", "name"),
    [
        ("class Solution:\n    def maxValue(self, nums: List[int], k: int) -> int:\n", "maxValue"),
        ("class Solution:\n    def __init__(self):\n        pass\n    def go(self):\n", "go"),
        ("", None),
    ],
)
def test_func_name_from_starter(starter: str, name: str | None) -> None:
    assert func_name_from_starter(starter) == name


def test_humaneval() -> None:
    problems = load_humaneval()
    assert len(problems) == 164
    p = problems[0]
    assert p.question_id == "HumanEval/0" and p.entry_point == "has_close_elements"
    assert p.kind == "check" and not p.prelude and p.code_prefix == p.content
    assert p.check_script is not None and "def check(candidate)" in p.check_script


def test_check_script_problems() -> None:
    problems = load_check_script_problems(FIXTURES / "leetcode_train_slice.json")
    assert len(problems) == 20
    p = problems[0]
    assert p.entry_point == "Solution().twoSum" and p.func_name == "twoSum"
    assert p.check_script is not None and "check(Solution()" not in p.check_script
    assert p.starter_code.startswith("class Solution:")
    with pytest.raises(ValueError):
        problem_from_check_script("statement", "def check(candidate):\n    pass\n")


def test_check_script_to_functional() -> None:
    p = load_check_script_problems(FIXTURES / "leetcode_train_slice.json")[0]
    f = check_script_to_functional(p)
    assert f is not None and f.kind == "functional" and f.func_name == "twoSum"
    assert f.tests[0] == Test("[2, 7, 11, 15]\n9", "[0, 1]", "functional")
    tolerant = replace(p, check_script="def check(candidate):\n    assert candidate(1) < 2\n")
    assert check_script_to_functional(tolerant) is None
    tupled = replace(p, check_script="def check(candidate):\n    assert candidate(1, 2) == (1,)\n")
    assert check_script_to_functional(tupled) is None


def test_fingerprint_tracks_tests_not_statement() -> None:
    p = load_lcb_jsonl(OFFICIAL)[0]
    assert replace(p, content="reworded").fingerprint == p.fingerprint
    assert replace(p, tests=p.tests[:1]).fingerprint != p.fingerprint
