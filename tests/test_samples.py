"""Append-only sample files: torn tails repaired, done keys known, duplicates refused."""

from __future__ import annotations

import json

import pytest

from ssd.records import SampleWriter, read_records, repair


def test_torn_tail_is_cut_and_done_keys_are_read(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"prompt_id": "a", "sample_index": 0}) + "\n" + '{"prompt_id": "b"')
    with SampleWriter(path) as writer:
        assert writer.repaired_bytes == len('{"prompt_id": "b"')
        assert writer.done == {("a", 0)}
        writer.write({"prompt_id": "b", "sample_index": 0})
        with pytest.raises(ValueError, match="written twice"):
            writer.write({"prompt_id": "a", "sample_index": 0})
    assert [r["prompt_id"] for r in read_records(path)] == ["a", "b"]
    assert repair(path) == 0


def test_invalid_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt_id": "a", "sample_index": 0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        list(read_records(path))
