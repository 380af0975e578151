"""The generate stage's diagnostics of the sampled text, on planted samples; the extraction rule
they share with the evaluate stage."""

from __future__ import annotations

import pytest

import ssd.evaluation.extraction as evaluation_extraction
from ssd import code_blocks
from ssd.generation.diagnostics import (
    diagnose,
    is_mixed_script,
    parses_as_python,
    script_of,
)
from ssd.generation.run import flat_metrics

GIBBERISH = "sort массив затем 排序数组 then print"  # 13 Latin, 11 Cyrillic, 4 CJK letters


def sample(index: int, completion: str, tokens: int, finish: str = "stop") -> dict:
    return {"prompt_id": f"p{index}", "sample_index": 0, "completion": completion,
            "completion_tokens": tokens, "finish_reason": finish}


PLANTED = [
    sample(0, "Here:\n```python\nprint(1)\n```\n", 10),                 # a code block
    sample(1, "print(1)\nprint(2)", 6),                                 # code, but no block
    sample(2, "Sort the array and take the middle element.", 12),      # prose
    sample(3, GIBBERISH, 14),                                           # mixed-script gibberish
    sample(4, "```python\nfor i in range(10):\n    print(i", 16, "length"),  # cut, block open
    sample(5, "```python\ndef f(:\n    return 1\n```", 9),               # a block that fails
    sample(6, "", 0, "prompt_too_long"),                                # nothing sampled
]


def test_planted_samples_give_exact_shares() -> None:
    found = diagnose(PLANTED)
    assert found["samples"] == 6  # the prompt that did not fit is not a sample of text
    assert found["code_block"] == 2 / 6
    assert found["parses"] == 1 / 6
    assert found["cut"] == 1 / 6
    assert found["mixed_script"] == 1 / 6
    assert found["non_ascii"] == 15 / sum(len(s["completion"]) for s in PLANTED)
    assert found["mean_completion_tokens"] == (10 + 6 + 12 + 14 + 16 + 9) / 6
    # lengths 6, 9, 10, 12, 14, 16: the lower median is 10, the block's sample
    chosen = found["representative"]
    assert (chosen["prompt_id"], chosen["completion_tokens"]) == ("p0", 10)
    assert chosen["completion"] == PLANTED[0]["completion"] and chosen["clipped_chars"] == 0


def test_no_samples_have_no_shares() -> None:
    found = diagnose([sample(0, "", 0, "prompt_too_long")])
    assert found["samples"] == 0 and found["code_block"] is None
    assert found["representative"] is None


def test_the_diagnostics_are_logged_as_generate_scalars() -> None:
    flat = flat_metrics({}, None, None, diagnose(PLANTED))
    assert flat["generate/diagnostics/code_block"] == 2 / 6
    assert flat["generate/diagnostics/mean_completion_tokens"] == 67 / 6
    assert not any("diagnostics" in key for key in flat_metrics({}, None, None, None))


@pytest.mark.parametrize(("text", "mixed"), [
    (GIBBERISH, True),
    ("Use the formula area = π r² and print it. " * 10, False),  # one Greek letter in 280
    ("def f():\n    return 'Москва'\n" + "# read the input and sort it\n" * 20, False),
    ("x = 1  # π", False),  # 1 of 2 letters, but fewer than 5: a symbol, not a mixture
    ("日本語のテキストです", False),  # kanji with kana: one (East Asian) script
    ("ＡＢＣ abc", False),  # full-width Latin is Latin
    ("首先读取输入然后排序数组\n```python\nprint(sorted(input().split()))\n```", True),
    ("", False),
])
def test_mixed_script(text: str, mixed: bool) -> None:
    assert is_mixed_script(text) is mixed


def test_scripts_are_read_from_unicode_names() -> None:
    assert [script_of(c) for c in "aЖαا中あア한Ａｱ"] == [
        "LATIN", "CYRILLIC", "GREEK", "ARABIC", "CJK", "CJK", "CJK", "CJK", "LATIN", "CJK"]


def test_parsing_is_python_syntax_only() -> None:
    assert parses_as_python("import sys\nprint(sys.argv)\n")
    assert parses_as_python("s = '\\d'\n")  # an invalid escape warns, and parses
    assert not parses_as_python("def f(:\n")
    assert not parses_as_python("x = 1\0\n")  # null bytes
    assert not parses_as_python("(" * 1000 + ")" * 1000)  # too deeply nested


def test_the_evaluate_stage_extracts_with_the_shared_rule() -> None:
    """One rule in the core, the evaluate stage's names are the same functions."""
    for name in ("Extraction", "extract_code", "fenced_blocks", "strip_thinking"):
        assert getattr(evaluation_extraction, name) is getattr(code_blocks, name)
