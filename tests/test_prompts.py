"""Prompt pools: formats, de-duplication, stable ids, clear errors."""

from __future__ import annotations

import json

import pytest

from ssd.data.prompts import DataError, chat_messages, deduplicate, load_pool, prompt_id
from tests.conftest import REPO

SHARED = REPO.parent / "shared" / "data" / "prompts"


def test_whitespace_normalised_exact_dedup_keeps_first_and_counts():
    prompts, duplicates, empties = deduplicate(
        ["Sum two  numbers.\n", "Sum two numbers.", "  ", "Sum three numbers."])
    assert [p.statement for p in prompts] == ["Sum two  numbers.", "Sum three numbers."]
    assert (duplicates, empties) == (1, 1)


def test_prompt_ids_are_stable_and_content_based():
    assert prompt_id("a  b\n") == prompt_id("a b")
    assert prompt_id("a b") != prompt_id("a c")


def test_limit_applies_after_dedup_and_ids_do_not_depend_on_it(tmp_path):
    path = tmp_path / "pool.jsonl"
    rows = [{"q": "p1"}, {"q": "p1 "}, {"q": "p2"}, {"q": "p3"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    full = load_pool(str(path), "q")
    cut = load_pool(str(path), "q", limit=2)
    assert [p.statement for p in cut.prompts] == ["p1", "p2"]
    assert cut.prompts == full.prompts[:2]
    assert full.duplicates_dropped == 1 and full.records_read == 4


def test_shipped_pool_loads():
    pool = load_pool(str(REPO / "data/prompts/codeforces_sample.json"), "problem")
    assert len(pool.prompts) == 64


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside this clone")
@pytest.mark.parametrize("name", ["codeforces_test.json", "code_contests_test.json",
                                  "leetcode_train.json"])
def test_shared_pools_load(name):
    pool = load_pool(str(SHARED / name), "problem")
    assert len(pool.prompts) + pool.duplicates_dropped + pool.empty_dropped == pool.records_read


def test_bad_jsonl_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text('{"problem": "a"}\n{"problem": \n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_pool(str(path), "problem")


def test_missing_field_names_the_fix(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text(json.dumps([{"question": "a"}]))
    with pytest.raises(DataError, match=r"has no field 'problem'; set data\.field"):
        load_pool(str(path), "problem")


def test_chat_messages_ask_for_one_python_code_block():
    system, user = chat_messages("Add two numbers.")
    assert system["role"] == "system" and "Python" in system["content"]
    assert "code block" in system["content"]
    assert user == {"role": "user", "content": "Add two numbers."}
