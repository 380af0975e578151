"""What the sampled training set looks like: pure functions of the samples' text and lengths.

The paper's Section 4.4 / Appendix C.5 stress test trains on samples of which ~62% hold no
extractable code, and its Figure 7a shows the "multilingual gibberish" that high temperatures
without truncation produce. These diagnostics make both visible for every generate run
(``run.json``: ``diagnostics``; metrics ``generate/diagnostics/<name>``; the reports). Every share
is over the samples the model actually sampled (a ``prompt_too_long`` record holds no text):

* ``code_block``: the response holds a code block the evaluate stage would extract (the project's
  rule, ``ssd.code_blocks.extract_code``: reasoning removed, the last fenced block, closed and not
  empty).
* ``parses``: that block parses as Python (``ast.parse``); a share of all samples, so it is at
  most ``code_block``.
* ``cut``: the sample stopped at ``decoding.max_tokens`` (``finish_reason == "length"``).
* ``mean_completion_tokens``: the mean number of sampled tokens.
* ``non_ascii``: the share of all sampled characters outside ASCII (character-weighted: a stray
  curly quote in a long answer barely moves it; gibberish does).
* ``mixed_script``: the share of samples whose letters mix scripts (``is_mixed_script``).
* ``representative``: the sample of median length (the lower median; the first such sample in
  pool order), its text clipped to ``REPRESENTATIVE_CHARS``.
"""

from __future__ import annotations

import ast
import functools
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ssd.code_blocks import extract_code
from ssd.sampling import PROMPT_TOO_LONG

# A sample is mixed-script when the letters outside its dominant script are at least this share
# of its letters and at least this many. Why these values: an honest English answer with Python
# holds hundreds of letters or more, so a Greek "π" in a comment, a "µs" or a short Cyrillic test
# string stays well under 5%; gibberish sampled from a multilingual vocabulary without truncation
# puts tens of percent of its letters into other scripts. The count keeps one symbol in a short
# stub (1 of 15 letters) from counting.
MIXED_SCRIPT_MIN_SHARE = 0.05
MIXED_SCRIPT_MIN_LETTERS = 5
# East Asian writing mixes these scripts by design (Japanese: kanji with kana): one script here.
_EAST_ASIAN = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC"})
_WIDTH_PREFIXES = frozenset({"FULLWIDTH", "HALFWIDTH"})
REPRESENTATIVE_CHARS = 4000
# ASCII letters are Latin: counted by a regex, so only the rare non-ASCII characters of a long
# run are looked up one by one (a paper-scale run holds hundreds of millions of characters).
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# The shares of samples (non_ascii, a share of characters, is apart).
SAMPLE_SHARES = ("code_block", "parses", "cut", "mixed_script")
# Every number of ``diagnose`` (what the metrics log).
SCALARS = (*SAMPLE_SHARES, "non_ascii", "mean_completion_tokens")


@functools.cache
def script_of(letter: str) -> str:
    """The script of a letter, read from its Unicode name: the name's first word ("LATIN",
    "CYRILLIC", "GREEK", "ARABIC", ...), a FULLWIDTH/HALFWIDTH prefix skipped, East Asian scripts
    as one ("CJK"); "UNKNOWN" for an unnamed character."""
    words = unicodedata.name(letter, "UNKNOWN").split()
    while len(words) > 1 and words[0] in _WIDTH_PREFIXES:
        words = words[1:]
    return "CJK" if words[0] in _EAST_ASIAN else words[0]


def is_mixed_script(text: str) -> bool:
    """The letters of ``text`` (Unicode category L*) that are not in its most common script are
    at least ``MIXED_SCRIPT_MIN_SHARE`` of its letters and at least ``MIXED_SCRIPT_MIN_LETTERS``.
    Digits, punctuation, symbols and spaces are not letters and never count. An answer written
    in Chinese around Latin code counts as mixed: with English prompts that is drift as well."""
    scripts = Counter(script_of(c) for c in _NON_ASCII.findall(text) if c.isalpha())
    scripts["LATIN"] += len(_ASCII_LETTER.findall(text))
    letters = sum(scripts.values())
    if sum(1 for count in scripts.values() if count) < 2:
        return False
    others = letters - scripts.most_common(1)[0][1]
    return others >= MIXED_SCRIPT_MIN_LETTERS and others >= MIXED_SCRIPT_MIN_SHARE * letters


def non_ascii_chars(text: str) -> int:
    return len(text) - len(text.encode("ascii", "ignore"))


def parses_as_python(code: str) -> bool:
    """``ast.parse`` accepts ``code`` (nothing is run). Warnings about the source (invalid escape
    sequences) are not failures and are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def code_block_parses(completion: str) -> tuple[bool, bool]:
    """(the response holds an extractable code block, that block parses as Python)."""
    code = extract_code(completion).code
    return code is not None, code is not None and parses_as_python(code)


def representative(samples: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first sample (in the given order) of the lower median completion length, its text
    clipped to ``REPRESENTATIVE_CHARS``; None without samples."""
    if not samples:
        return None
    lengths = sorted(s["completion_tokens"] for s in samples)
    median = lengths[(len(lengths) - 1) // 2]
    chosen = next(s for s in samples if s["completion_tokens"] == median)
    text = chosen["completion"]
    return {"prompt_id": chosen["prompt_id"], "sample_index": chosen["sample_index"],
            "completion_tokens": chosen["completion_tokens"],
            "finish_reason": chosen["finish_reason"],
            "completion": text[:REPRESENTATIVE_CHARS],
            "clipped_chars": max(0, len(text) - REPRESENTATIVE_CHARS)}


def diagnose(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The diagnostics of a run's samples (see the module docstring); the shares are None when
    nothing was sampled."""
    sampled = [s for s in samples if s.get("finish_reason") != PROMPT_TOO_LONG]
    counts: Counter[str] = Counter()
    characters = 0
    for sample in sampled:
        text = sample["completion"]
        block, parses = code_block_parses(text)
        counts["code_block"] += block
        counts["parses"] += parses
        counts["cut"] += sample.get("finish_reason") == "length"
        counts["mixed_script"] += is_mixed_script(text)
        counts["non_ascii"] += non_ascii_chars(text)
        characters += len(text)
    n = len(sampled)
    return {"samples": n,
            **{name: _share(counts[name], n) for name in SAMPLE_SHARES},
            "non_ascii": _share(counts["non_ascii"], characters),
            "mean_completion_tokens": _share(sum(s["completion_tokens"] for s in sampled), n),
            "representative": representative(sampled)}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
