"""Named problem sets, pinned on the shipped metadata (no hub), and what evaluate.py states about
the set it scored."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from ssd.config import ConfigError
from ssd.evaluation import PROBLEM_SETS, run_evaluation
from ssd.evaluation.problem_sets import (
    RELEASES,
    ProblemSet,
    custom_problem_set,
    id_digest,
    select_ids,
    shipped_metadata,
)
from tests.conftest import cli_error, compose

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
META = list(shipped_metadata().values())


def test_the_shipped_metadata_is_release_v6() -> None:
    assert len(META) == 1055  # release_v6: May 2023 - April 2025
    assert Counter(m.release for m in META) == {"release_v5": 880, "release_v6": 175}
    assert {m.platform for m in META} == {"atcoder", "codeforces", "leetcode"}
    assert {m.difficulty for m in META} == {"easy", "medium", "hard"}
    assert max(m.contest_date for m in META) < "2025-05-01"  # the data end in April 2025


@pytest.mark.parametrize(("name", "count"), [("lcb_v6", 131), ("lcb_v6_delta", 175),
                                             ("lcb_v5", 374)])
def test_named_sets_select_the_published_counts(name: str, count: int) -> None:
    # 131: the paper's LCB v6 (Section C.1); 175: release_v6 minus release_v5 (test6.jsonl);
    # 374: the paper's LCB v5, "August 2024 to February 2025".
    assert len(select_ids(PROBLEM_SETS[name], META)) == count


def test_the_two_lcb_v6_sets_differ_by_the_january_problems() -> None:
    window = set(select_ids(PROBLEM_SETS["lcb_v6"], META))
    delta = set(select_ids(PROBLEM_SETS["lcb_v6_delta"], META))
    by_id = shipped_metadata()
    assert window < delta  # every Feb-Apr 2025 problem is new in release_v6
    assert {by_id[q].contest_date[:7] for q in delta - window} == {"2025-01"}
    assert len(delta - window) == 44
    assert Counter(by_id[q].difficulty for q in delta) == {"easy": 43, "medium": 52, "hard": 80}
    # The offline lcb_2408_2501 set (279 problems) is release_v5's part of Aug 2024 - Jan 2025.
    v5_part = custom_problem_set("2024-08-01", "2025-01-31", (None, "release_v5"))
    assert len(select_ids(v5_part, META)) == 279


def test_custom_sets_are_named_by_their_definition() -> None:
    both = custom_problem_set("2025-03-01", None, ("release_v5", "release_v6"))
    assert both.definition == ("contest dates 2025-03-01..... and release_v6 minus release_v5 "
                               "of code_generation_lite")
    assert both.name == f"custom: {both.definition}"
    march_on = set(select_ids(both, META))
    assert march_on and all(shipped_metadata()[q].contest_date >= "2025-03-01" for q in march_on)
    assert ProblemSet("x").definition == "every problem"
    assert not ProblemSet("x", releases=(None, RELEASES[-1])).contains("no-such-id", "2025-03-01")


def test_id_digest_is_sha256_of_the_sorted_ids() -> None:
    assert id_digest(["b", "a"]) == hashlib.sha256(b"a\nb").hexdigest() == id_digest(["a", "b"])


# -- evaluate.py states the set it scored --------------------------------------------------------
def _official_file_with_real_ids(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The official-format fixture's five problems under real ids of the shipped metadata (their
    contest dates too): 3 dated Feb-Apr 2025, 1 of January 2025 added by release_v6, 1 older."""
    by_id = shipped_metadata()
    renamed = {"abc900_a": "abc397_a", "abc901_b": "abc388_a", "3901": "3777", "3902": "3562",
               "1999_c": "abc400_b"}
    rows = [json.loads(line) for line in (FIXTURES / "official_sample.jsonl").open()]
    for row in rows:
        row["question_id"] = renamed[row["question_id"]]
        row["contest_date"] = by_id[row["question_id"]].contest_date + "T00:00:00"
    path = tmp_path / "official_real_ids.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, renamed


@pytest.mark.parametrize(("preset", "expected"), [
    ("lcb_v6", ["3777", "abc397_a", "abc400_b"]),
    ("lcb_v6_delta", ["3777", "abc388_a", "abc397_a", "abc400_b"]),
])
def test_evaluate_report_states_set_name_count_and_digest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], preset: str,
        expected: list[str]) -> None:
    path, renamed = _official_file_with_real_ids(tmp_path)
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(
        json.dumps({"question_id": qid, "sample_index": 0, "completion": "no code here"}) + "\n"
        for qid in renamed.values()))
    out = run_evaluation(compose("evaluate", [
        f"eval={preset}", f"eval.path={path}", f"eval.completions={completions}", "eval.ks=[1]",
        "logger=none", "progress=false", f"output_dir={tmp_path}/out"]))
    record = {"name": preset, "definition": PROBLEM_SETS[preset].definition,
              "problems": len(expected), "id_digest": id_digest(expected)}
    assert json.loads((out / "metrics.json").read_text())["problem_set"] == record
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["question_id"] for r in results) == expected
    assert {(r["problem_set"], r["problem_set_digest"]) for r in results} == {
        (preset, record["id_digest"])}
    printed = capsys.readouterr().out
    assert f"problem set {preset} ({record['definition']}): {len(expected)} problems, " \
           f"ids sha256 {record['id_digest'][:12]}" in printed


def test_an_offline_set_is_named_by_its_file(tmp_path: Path) -> None:
    completions = tmp_path / "c.jsonl"
    from ssd.evaluation import load_lcb_offline

    problems = load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")[:3]
    completions.write_text("".join(json.dumps({"question_id": p.question_id, "sample_index": 0,
                                               "completion": "x"}) + "\n" for p in problems))
    out = run_evaluation(compose("evaluate", [
        "eval=lcb_sample", "eval.limit=3", f"eval.completions={completions}", "eval.ks=[1]",
        "logger=none", "progress=false", f"output_dir={tmp_path}/out"]))
    assert json.loads((out / "metrics.json").read_text())["problem_set"] == {
        "name": "lcb_sample",
        "definition": "every problem of lcb_2408_2501_slice.json, the first 3 in file order",
        "problems": 3, "id_digest": id_digest(p.question_id for p in problems)}


@pytest.mark.parametrize(("overrides", "message"), [
    (["eval.problem_set=lcb_v7"], r"^eval\.problem_set=lcb_v7: must be one of lcb_v6, "),
    (["eval.start_date=2025-01-01"],
     r"^eval\.start_date=2025-01-01: must be null while eval\.problem_set=lcb_v6 defines the set"),
    (["eval.problem_set=null", "eval.releases=[release_v6,release_v5]"],
     r"^eval\.releases=\['release_v6', 'release_v5'\]: must be \[after, through\]"),
    (["eval.problem_set=null", "eval.end_date=2025-13"],
     r"^eval\.end_date=2025-13: must be a date"),
])
def test_bad_problem_set_values_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_evaluation(compose("evaluate", ["eval=lcb_v6", *overrides]))


def test_changing_the_set_changes_the_run(tmp_path: Path) -> None:
    from ssd.evaluation.run import run_identity

    def identity(*overrides: str) -> str:
        return run_identity(compose("evaluate", ["model=tiny", *overrides]))

    assert identity("eval=lcb_v6") != identity("eval=lcb_v6_delta")
    assert identity("eval=lcb_v6", "eval.problem_set=null") != identity("eval=lcb_v6")
    assert cli_error("evaluate", ["eval=lcb_v6", "eval.problem_set=v6"], tmp_path) == [
        "error: eval.problem_set=v6: must be one of lcb_v6, lcb_v6_delta, lcb_v5, or null for "
        "the window and releases given by eval.start_date, eval.end_date and eval.releases"]
