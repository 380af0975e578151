"""The degeneracy filter: exact counts per reason, deterministic, no correctness signal."""

from __future__ import annotations

from ssd.generation.filter import (
    EMPTY,
    SHORTEST,
    SINGLE_LINE,
    degeneracy_reason,
    filter_samples,
    training_record,
)


def sample(text: str, tokens: int, index: int = 0) -> dict:
    return {"prompt_id": f"p{index}", "sample_index": 0, "completion": text,
            "completion_tokens": tokens, "messages": [{"role": "user", "content": "q"}]}


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


def test_training_record_appends_the_raw_completion():
    record = training_record(sample("a\nb", 2))
    assert record["messages"][-1] == {"role": "assistant", "content": "a\nb"}
    assert record["messages"][0]["role"] == "user"
