"""Unbiased pass@k (Chen et al., 2021) and its aggregation over problems."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

UNLABELED = "unlabeled"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n is correct.

    Equals 1 - C(n-c, k) / C(n, k), computed as a product of ratios: the binomials overflow
    floats long before n gets large, the product never does.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass(frozen=True)
class ProblemResult:
    question_id: str
    difficulty: str | None
    n: int  # samples drawn
    c: int  # samples that passed


def _mean_pass(results: Sequence[ProblemResult], k: int) -> float:
    return sum(pass_at_k(r.n, r.c, k) for r in results) / len(results)


def summarize(results: Iterable[ProblemResult], ks: Sequence[int] = (1, 5)) -> dict[str, object]:
    """Mean pass@k over problems, overall and per difficulty (None -> "unlabeled")."""
    results = list(results)
    groups: dict[str, list[ProblemResult]] = {}
    for r in results:
        groups.setdefault(r.difficulty or UNLABELED, []).append(r)

    def block(rs: Sequence[ProblemResult]) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"pass@{k}": _mean_pass(rs, k) for k in ks} if rs else {}
        out["problems"] = len(rs)
        return out

    return {
        "overall": block(results),
        "per_difficulty": {name: block(rs) for name, rs in sorted(groups.items())},
    }
