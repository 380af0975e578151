"""The paper's minimal degeneracy filter, and the policy for samples cut at max_tokens.

Section C.1 removes "empty responses and single-line stubs"; ml-ssd optionally also drops the
shortest x% of samples. Each rule is a pure function of the sample, so the counts per reason are
exact and the step can be re-run on any samples file. In order:

1. ``prompt_too_long``: the prompt did not fit the context, so nothing was sampled (always dropped).
2. ``cut_samples``: a sample that stopped at ``decoding.max_tokens`` (``finish_reason ==
   "length"``) has no end: ``keep_open`` (the default) trains on its tokens as sampled, with no
   end-of-turn label after them, since the model did not produce one (appending it would teach
   the model to stop wherever max_tokens happened to cut); ``drop`` removes it.
3. ``drop_empty``, ``drop_single_line``: the degeneracy rules, on the completion's text.
4. ``drop_shortest_fraction``: the shortest fraction of what is left, by completion tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ssd.sampling import PROMPT_TOO_LONG

EMPTY = "empty"
SINGLE_LINE = "single_line_stub"
SHORTEST = "shortest_fraction"
CUT = "cut_at_max_tokens"
REASONS = (PROMPT_TOO_LONG, CUT, EMPTY, SINGLE_LINE, SHORTEST)
CUT_POLICIES = ("keep_open", "drop")


@dataclass(frozen=True)
class FilterResult:
    kept: list[dict[str, Any]]
    dropped: Counter[str]
    kept_open: int  # kept samples cut at max_tokens (trained on without an end-of-turn label)


def is_cut(sample: dict[str, Any]) -> bool:
    """The sample stopped because it reached max_tokens, not because the model ended it."""
    return sample.get("finish_reason") == "length"


def degeneracy_reason(completion: str, drop_empty: bool, drop_single_line: bool) -> str | None:
    """Why a completion is unusable as a training target, or None if it is kept."""
    lines = [line for line in completion.splitlines() if line.strip()]
    if drop_empty and not lines:
        return EMPTY
    if drop_single_line and len(lines) == 1:
        return SINGLE_LINE
    return None


def sample_reason(sample: dict[str, Any], drop_empty: bool, drop_single_line: bool,
                  cut_samples: str) -> str | None:
    """Rules 1-3 for one sample: why it is dropped, or None."""
    if sample.get("finish_reason") == PROMPT_TOO_LONG:
        return PROMPT_TOO_LONG
    if cut_samples == "drop" and is_cut(sample):
        return CUT
    return degeneracy_reason(sample["completion"], drop_empty, drop_single_line)


def filter_samples(
    samples: list[dict[str, Any]],
    drop_empty: bool = True,
    drop_single_line: bool = True,
    drop_shortest_fraction: float = 0.0,
    cut_samples: str = "keep_open",
) -> FilterResult:
    """Apply the per-sample rules, then drop the shortest fraction (by completion tokens).

    Ties in length are broken by the samples' order, so the result is deterministic.
    """
    if cut_samples not in CUT_POLICIES:
        raise ValueError(f"cut_samples={cut_samples!r}: must be one of {CUT_POLICIES}")
    dropped: Counter[str] = Counter()
    kept = []
    for sample in samples:
        reason = sample_reason(sample, drop_empty, drop_single_line, cut_samples)
        if reason is None:
            kept.append(sample)
        else:
            dropped[reason] += 1
    cut = math.floor(drop_shortest_fraction * len(kept))
    if cut:
        by_length = sorted(range(len(kept)), key=lambda i: (kept[i]["completion_tokens"], i))
        shortest = set(by_length[:cut])
        kept = [sample for i, sample in enumerate(kept) if i not in shortest]
        dropped[SHORTEST] += cut
    return FilterResult(kept=kept, dropped=dropped, kept_open=sum(map(is_cut, kept)))


def training_record(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample as an SFT example: the token ids as sampled (what train.py trains on), the
    finish reason (whether the model ended it), and the chat text for people and other tools."""
    return {
        "prompt_id": sample["prompt_id"],
        "sample_index": sample["sample_index"],
        "prompt_token_ids": sample["prompt_token_ids"],
        "completion_token_ids": sample["completion_token_ids"],
        "finish_reason": sample["finish_reason"],
        "messages": [*sample["messages"], {"role": "assistant", "content": sample["completion"]}],
    }
