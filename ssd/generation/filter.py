"""The paper's minimal degeneracy filter: no correctness signal, only clearly unusable outputs.

Section C.1 removes "empty responses and single-line stubs"; ml-ssd optionally also drops the
shortest x% of samples. Each rule is a pure function of the sample, so the counts per reason are
exact and the step can be re-run on any samples file.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

EMPTY = "empty"
SINGLE_LINE = "single_line_stub"
SHORTEST = "shortest_fraction"


@dataclass(frozen=True)
class FilterResult:
    kept: list[dict[str, Any]]
    dropped: Counter[str]


def degeneracy_reason(completion: str, drop_empty: bool, drop_single_line: bool) -> str | None:
    """Why a completion is unusable as a training target, or None if it is kept."""
    lines = [line for line in completion.splitlines() if line.strip()]
    if drop_empty and not lines:
        return EMPTY
    if drop_single_line and len(lines) == 1:
        return SINGLE_LINE
    return None


def filter_samples(
    samples: list[dict[str, Any]],
    drop_empty: bool = True,
    drop_single_line: bool = True,
    drop_shortest_fraction: float = 0.0,
) -> FilterResult:
    """Apply the per-sample rules, then drop the shortest fraction (by completion tokens).

    Ties in length are broken by the samples' order, so the result is deterministic.
    """
    dropped: Counter[str] = Counter()
    kept = []
    for sample in samples:
        reason = degeneracy_reason(sample["completion"], drop_empty, drop_single_line)
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
    return FilterResult(kept=kept, dropped=dropped)


def training_record(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample as an SFT example: the prompt's chat messages plus the raw completion."""
    return {
        "prompt_id": sample["prompt_id"],
        "sample_index": sample["sample_index"],
        "messages": [*sample["messages"], {"role": "assistant", "content": sample["completion"]}],
    }
