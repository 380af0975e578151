"""pass@k against brute-force enumeration of k-subsets, and its aggregation."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from ssd.passk import ProblemResult, pass_at_k, summarize


def brute_force(n: int, c: int, k: int) -> Fraction:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(samples[i] for i in subset) for subset in subsets)
    return Fraction(hits, len(subsets))


@pytest.mark.parametrize("n", range(1, 11))
def test_matches_brute_force(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_force(n, c, k)), abs=1e-12)


def test_known_values() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)


def test_stable_for_large_n() -> None:
    # C(2000, 1000) overflows a float; the product form does not.
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)
    assert 0.0 < pass_at_k(2000, 3, 5) < 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_rejects_invalid(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_summarize_overall_and_per_difficulty() -> None:
    results = [
        ProblemResult("a", "easy", 10, 10),
        ProblemResult("b", "easy", 10, 0),
        ProblemResult("c", "hard", 10, 1),
        ProblemResult("d", None, 10, 5),
    ]
    report = summarize(results, ks=(1, 5))
    overall = report["overall"]
    assert overall["problems"] == 4
    assert overall["pass@1"] == pytest.approx((1.0 + 0.0 + 0.1 + 0.5) / 4)
    assert overall["pass@5"] == pytest.approx((1.0 + 0.0 + 0.5 + pass_at_k(10, 5, 5)) / 4)
    per = report["per_difficulty"]
    assert set(per) == {"easy", "hard", "unlabeled"}
    assert per["easy"] == {"pass@1": 0.5, "pass@5": 0.5, "problems": 2}
    assert per["unlabeled"]["pass@1"] == pytest.approx(0.5)


def test_summarize_empty() -> None:
    assert summarize([]) == {"overall": {"problems": 0}, "per_difficulty": {}}
