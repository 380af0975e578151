"""Decontamination (ssd/data/decontamination.py): normalisation, the overlap rule on real LCB
statements, generate.py dropping a planted copy of an LCB problem (run record, metrics, identity)
and analyze.py command=decontaminate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ssd.config import ConfigError
from ssd.data.decontamination import (
    MIN_SHARED,
    EvalProblem,
    check_pool,
    check_record,
    drop_overlapping,
    ngrams,
    normalise,
)
from ssd.data.eval_sets import check_eval_sets
from ssd.data.prompts import Prompt, prompt_id
from ssd.evaluation import eval_set_problems
from tests.conftest import REPO, cli_error, compose

CODEFORCES_SAMPLE = REPO / "data" / "prompts" / "codeforces_sample.json"


def prompt(statement: str) -> Prompt:
    return Prompt(prompt_id(statement), statement)


def planted_copy(problem: EvalProblem) -> str:
    """An LCB (AtCoder) statement as a Codeforces-style pool would carry it: its own wrapper,
    LaTeX dollars around the formulas, HTML entities."""
    body = problem.statement.replace("A_1", "$A_1$").replace("<", "&lt;")
    return f"Solve the following problem in Python.\n\n{body}\n\nTime Limit: 2000 ms"


def test_normalise_makes_markup_variants_of_a_statement_equal():
    plain = "Given 1 <= n <= 10^5, print the sum_of A."
    latex = r"Given $1 \le n \le 10^5$, print the <b>sum_of</b> $A$."
    html = "Given 1 &lt;= n &lt;= 10<sup>5</sup>, print the SUM OF A."
    assert normalise(plain) == normalise(latex) == normalise(html) == \
        "given 1 n 10 5 print the sum of a"
    assert ngrams("a b c d e f g h i", 8) == ["a b c d e f g h", "b c d e f g h i"]
    assert ngrams("too short to hold one", 8) == []


def test_a_copy_is_found_template_text_and_other_problems_are_not():
    problems = eval_set_problems("lcb_sample")
    atcoder = problems[0]
    copy = prompt(planted_copy(atcoder))
    # Only AtCoder's input-format sentence, which half the sample's problems share.
    template = prompt("Bob has n apples. The input is given from Standard Input in the following "
                      "format: n. Output the number of pears Bob can buy with them.")
    other = [prompt(p["problem"]) for p in json.loads(CODEFORCES_SAMPLE.read_text())[:6]]
    pool = [other[0], copy, template, *other[1:]]
    check = check_pool(pool, problems)

    assert [o.prompt_id for o in check.overlaps] == [copy.prompt_id]
    [match] = check.overlaps[0].matches
    assert (match.benchmark, match.question_id) == ("lcb_sample", atcoder.question_id)
    assert match.shared >= 20 >= MIN_SHARED
    assert template.prompt_id in check.any_ngram           # open-r1's rule would drop it
    assert drop_overlapping(pool, check) == [p for p in pool if p is not copy]
    record = check_record(check, ["lcb_sample"])
    assert (record["checked"], record["overlapping"]) == (len(pool), 1)
    assert record["overlapping_by_set"] == {"lcb_sample": 1}
    assert record["problems_hit"] == {"lcb_sample": 1}
    assert record["shares_any_ngram"] >= 2


def test_a_problem_in_two_sets_is_still_evidence_and_counted_for_both():
    """The template rule counts distinct statements, so a problem both sets hold (the 2024-08..
    2025-01 problems are in release_v5 too) is not mistaken for template text."""
    problems = eval_set_problems("lcb_sample")
    copy = prompt(planted_copy(problems[0]))
    twice = problems + [EvalProblem("again", p.question_id, p.statement) for p in problems]
    check = check_pool([copy], twice)
    assert {m.benchmark for m in check.overlaps[0].matches} == {"lcb_sample", "again"}


def test_sets_load_as_evaluate_loads_them_from_a_preset_a_local_copy_or_a_file():
    slice_ = REPO / "tests/fixtures/lcb/lcb_2408_2501_slice.json"
    assert len(eval_set_problems("lcb_offline_2408_2501")) == 279
    assert len(eval_set_problems(f"lcb_offline_2408_2501:{slice_}")) == 8  # the preset, a copy
    assert len(eval_set_problems(str(slice_))) == 8
    # The official format: the preset's problem set over a local code_generation_lite file.
    official = REPO / "tests/fixtures/lcb/official_sample.jsonl"
    in_file = eval_set_problems(str(official))
    assert 0 < len(eval_set_problems(f"lcb_v6:{official}")) < len(in_file)


def test_bad_set_lists_are_refused_with_one_line():
    for value, message in [("[nope]", "'nope' is neither a conf/eval preset"),
                           ("[lcb_v6:/no/such.jsonl]", "'lcb_v6:/no/such.jsonl' is neither"),
                           (f"[{REPO / 'pyproject.toml'}]", "a benchmark file must end in .json"),
                           ("lcb_v6", "must be a list of conf/eval presets"),
                           ("[lcb_v6,lcb_v6]", "names a set twice")]:
        with pytest.raises(ConfigError, match=message) as error:
            check_eval_sets(compose("generate", [f"data.decontaminate={value}"]),
                            "data.decontaminate")
        assert "\n" not in str(error.value)
    assert check_eval_sets(compose("generate", []), "data.decontaminate") == []


def test_the_decontamination_sets_are_part_of_the_sampling_identity():
    from ssd.generation import sampling_plan

    def identity(*overrides: str) -> str:
        return sampling_plan(compose("generate", ["model=tiny", *overrides])).identity

    unchecked = identity()
    one = identity("data.decontaminate=[lcb_sample]")
    two = identity("data.decontaminate=[lcb_sample,humaneval]")
    assert len({unchecked, one, two}) == 3
    assert identity("data.decontaminate=[]") == unchecked


@pytest.mark.slow
def test_generate_drops_a_planted_copy_and_records_it(tmp_path):
    """The real generate path on the tiny model: a pool of three Codeforces prompts and a copy
    of an LCB problem, checked against lcb_sample: the copy is never sampled, and run.json, the
    printed line and the metrics count it."""
    from ssd.generation import run_generation

    atcoder = eval_set_problems("lcb_sample")[0]
    statements = [p["problem"] for p in json.loads(CODEFORCES_SAMPLE.read_text())[:3]]
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps([{"problem": s} for s in [statements[0], planted_copy(atcoder),
                                                         *statements[1:]]]))
    out = run_generation(compose("generate", [
        "model=tiny", f"data.path={pool}", "data.decontaminate=[lcb_sample]", "data.limit=3",
        "decoding.max_tokens=8", "engine.enforce_eager=true", "progress=false", "logger=none",
        "filter.drop_single_line=false", f"output_dir={tmp_path}/run"]), eval_set_problems)

    run = json.loads((out / "run.json").read_text())
    decontamination = run["decontamination"]
    assert (decontamination["checked"], decontamination["overlapping"]) == (4, 1)
    [overlap] = decontamination["overlaps"]
    assert overlap["prompt_id"] == prompt_id(planted_copy(atcoder))
    assert overlap["matches"][0]["question_id"] == atcoder.question_id
    assert run["pool"]["prompts"] == 3    # data.limit counts the prompts left after the drop
    sampled = {json.loads(line)["prompt_id"] for line in (out / "samples.jsonl").open()}
    assert sampled == {prompt_id(s) for s in statements}
    [metrics] = list(out.glob("filter-*/metrics.csv"))
    header, values = metrics.read_text().splitlines()[:2]
    row = dict(zip(header.split(","), values.split(","), strict=True))
    assert float(row["generate/decontamination/dropped"]) == 1.0
    assert float(row["generate/decontamination/checked"]) == 4.0


def test_analyze_decontaminate_prints_counts_and_examples(tmp_path):
    atcoder = eval_set_problems("lcb_sample")[0]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"question": s}) for s in
                              [planted_copy(atcoder), "Print the sum of two integers a and b."]))
    result = subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), "command=decontaminate",
         f"data.path={pool}", "data.field=question", "decontaminate.sets=[lcb_sample,humaneval]",
         f"output_dir={tmp_path}/out"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| lcb_sample | 8 | 1 | 1 | 1 |" in result.stdout
    assert "| humaneval | 164 | 0 | 0 | 0 |" in result.stdout
    assert "| all sets | 172 | 1 | 1 | 1 |" in result.stdout
    assert atcoder.question_id in result.stdout
    saved = json.loads((tmp_path / "out" / "decontamination.json").read_text())
    assert saved["sets"]["lcb_sample"]["overlaps"][0]["matches"][0]["question_id"] == \
        atcoder.question_id


def test_bad_decontamination_input_fails_with_one_line(tmp_path):
    assert cli_error("analyze", ["command=decontaminate", "decontaminate.sets=[]"],
                     tmp_path) == ["error: decontaminate.sets=[]: name at least one conf/eval "
                                   "preset or benchmark file, e.g. '[lcb_offline_2408_2501]'"]
    [line] = cli_error("generate", ["model=tiny", "data.decontaminate=[lcb_v7]"], tmp_path)
    assert line.startswith("error: data.decontaminate=['lcb_v7']: 'lcb_v7' is neither a "
                           "conf/eval preset")


TRANSFER_SETS = {"aime24": 30, "aime25": 30, "humaneval": 164, "humaneval_sh": 158,
                 "cruxeval_input": 800, "cruxeval_output": 800, "mmlu": 14_042}


@pytest.mark.slow  # loads all seven sets (MMLU's 14,042 questions) as evaluate.py does
def test_the_transfer_suite_stands_for_its_seven_sets_and_a_planted_copy_is_caught():
    sets = check_eval_sets(compose("generate", ["data.decontaminate=[transfer,aime24]"]),
                           "data.decontaminate")
    assert sets == list(TRANSFER_SETS)  # expanded, aime24 once
    for name in ("aime24", "aime25", "humaneval", "mmlu"):  # loaded as evaluate.py loads them
        assert len(eval_set_problems(name)) == TRANSFER_SETS[name]
    aime = eval_set_problems("aime25")
    mmlu = [p for p in eval_set_problems("mmlu") if len(ngrams(p.statement)) >= 20]
    pool = [prompt("Write a program that reads n and prints the sum of 1..n."),
            prompt(f"Solve this, then print the answer.\n\n{aime[3].statement}"),
            prompt(f"Quiz:\n{mmlu[100].statement}")]
    check = check_pool(pool, [*aime, *mmlu])
    assert check.overlapping == {pool[1].prompt_id, pool[2].prompt_id}
    record = check_record(check, ["aime25", "mmlu"])
    assert record["overlapping"] == 2 and record["overlapping_by_set"] == {"aime25": 1, "mmlu": 1}
