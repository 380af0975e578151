"""The degeneracy filter: exact counts per reason, deterministic, no correctness signal."""

from __future__ import annotations

import pytest

from ssd.generation.filter import (
    CUT,
    EMPTY,
    SHORTEST,
    SINGLE_LINE,
    degeneracy_reason,
    filter_samples,
    training_record,
)
from ssd.sampling import PROMPT_TOO_LONG


def sample(text: str, tokens: int, index: int = 0, finish: str = "stop") -> dict:
    return {"prompt_id": f"p{index}", "sample_index": 0, "completion": text,
            "completion_tokens": tokens, "messages": [{"role": "user", "content": "q"}],
            "prompt_token_ids": [5, 6], "completion_token_ids": list(range(10, 10 + tokens)),
            "finish_reason": finish}


def test_reasons():
    assert degeneracy_reason("", True, True) == EMPTY
    assert degeneracy_reason(" \n\t\n", True, True) == EMPTY
    assert degeneracy_reason("print(1)", True, True) == SINGLE_LINE
    assert degeneracy_reason("\n\nprint(1)\n\n", True, True) == SINGLE_LINE
    assert degeneracy_reason("x = 1\nprint(x)", True, True) is None
    assert degeneracy_reason("print(1)", True, False) is None
    assert degeneracy_reason("", False, True) is None


def test_wrong_but_well_formed_code_is_kept():
    assert degeneracy_reason("```python\nprint(42)  # wrong answer\n```", True, True) is None


def test_counts_and_shortest_fraction():
    samples = [sample("", 0, 0), sample("one", 1, 1)] + [
        sample("a\nb", tokens, i) for i, tokens in enumerate([5, 3, 9, 3, 7, 8], start=2)]
    result = filter_samples(samples, drop_shortest_fraction=0.34)
    assert result.dropped == {EMPTY: 1, SINGLE_LINE: 1, SHORTEST: 2}
    assert [s["completion_tokens"] for s in result.kept] == [5, 9, 7, 8]


def test_training_record_carries_the_sampled_ids_and_the_text():
    record = training_record(sample("a\nb", 2, finish="length"))
    assert record["prompt_token_ids"] == [5, 6] and record["completion_token_ids"] == [10, 11]
    assert record["finish_reason"] == "length"
    assert record["messages"][-1] == {"role": "assistant", "content": "a\nb"}
    assert record["messages"][0]["role"] == "user"


def test_cut_samples_are_kept_open_or_dropped_and_counted():
    samples = [sample("a\nb", 4, 0, "length"), sample("a\nb", 3, 1, "stop"),
               sample("", 0, 2, PROMPT_TOO_LONG), sample("x\ny", 4, 3, "length")]
    kept = filter_samples(samples)  # default: keep_open
    assert [s["prompt_id"] for s in kept.kept] == ["p0", "p1", "p3"]
    assert kept.kept_open == 2 and kept.dropped == {PROMPT_TOO_LONG: 1}
    dropped = filter_samples(samples, cut_samples="drop")
    assert [s["prompt_id"] for s in dropped.kept] == ["p1"]
    assert dropped.kept_open == 0 and dropped.dropped == {PROMPT_TOO_LONG: 1, CUT: 2}
    # A prompt that did not fit is dropped whatever the degeneracy rules say.
    assert filter_samples(samples[2:3], drop_empty=False).dropped == {PROMPT_TOO_LONG: 1}
    with pytest.raises(ValueError, match="cut_samples"):
        filter_samples(samples, cut_samples="close")
