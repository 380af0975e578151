"""The cost of the paired bootstrap (ssd/bootstrap.py) at the size reports use it.

A synthetic base-vs-SSD evaluation of 131 problems (LiveCodeBench v6) x 10 samples, a third each
easy, medium, hard. Timed, best of ``--rounds``:

* ``compare``: 10,000 resamples of the problems, pass@1 and pass@5, overall and per difficulty
  (4 scopes), both models and their difference, intervals and p-values: what a report computes
  per comparison; and the same with the samples redrawn too (``resample_samples``);
* baseline, in the same run: the same bootstrap as a plain Python loop (per resample, draw the
  problems, average ``pass_at_k`` per model and k), timed on ``--baseline-resamples`` resamples
  and scaled to 10,000.

Prints the seconds and "ratio: X" (plain loop / vectorised). Target (the issue): well under 2 s.
Usage: python bench/bootstrap_speed.py [--rounds 3] [--baseline-resamples 200]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np

from ssd.bootstrap import compare
from ssd.passk import ProblemResult, pass_at_k

PROBLEMS, SAMPLES, RESAMPLES, KS = 131, 10, 10_000, (1, 5)
LEVELS = ("easy", "medium", "hard")


def model(rng: np.random.Generator, logits: np.ndarray) -> list[ProblemResult]:
    passed = rng.binomial(SAMPLES, 1 / (1 + np.exp(-logits)))
    return [ProblemResult(f"q{j}", LEVELS[j % 3], SAMPLES, int(c)) for j, c in enumerate(passed)]


def synthetic(rng: np.random.Generator) -> tuple[list[ProblemResult], list[ProblemResult]]:
    """Base and SSD results on the same problems (the tests' simulated benchmark)."""
    x = rng.normal(-0.3, 2.0, PROBLEMS)
    return model(rng, x), model(rng, x + 0.4 + rng.normal(0, 0.5, PROBLEMS))


def plain_loop(a: list[ProblemResult], b: list[ProblemResult], resamples: int) -> None:
    """The same replicates without numpy: per scope, per resample, per k, per model."""
    draw = random.Random(0)
    scopes = [list(range(len(a)))] + [[i for i, r in enumerate(a) if r.difficulty == level]
                                      for level in LEVELS]
    for members in scopes:
        for k in KS:
            differences = []
            for _ in range(resamples):
                picks = [members[draw.randrange(len(members))] for _ in members]
                mean_a = sum(pass_at_k(a[i].n, a[i].c, k) for i in picks) / len(picks)
                mean_b = sum(pass_at_k(b[i].n, b[i].c, k) for i in picks) / len(picks)
                differences.append(mean_b - mean_a)
            differences.sort()


def best_of(rounds: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-resamples", type=int, default=200)
    args = parser.parse_args()
    a, b = synthetic(np.random.default_rng(0))
    vectorised = best_of(args.rounds, lambda: compare(a, b, ks=KS, resamples=RESAMPLES))
    two_stage = best_of(args.rounds, lambda: compare(a, b, ks=KS, resamples=RESAMPLES,
                                                     resample_samples=True))
    loop = best_of(1, lambda: plain_loop(a, b, args.baseline_resamples))
    scaled = loop * RESAMPLES / args.baseline_resamples
    print(f"{RESAMPLES} resamples, {PROBLEMS} problems x {SAMPLES} samples, pass@1 and pass@5, "
          f"overall + {len(LEVELS)} difficulties, best of {args.rounds}:")
    print(f"  compare, problems resampled:             {vectorised:.3f} s")
    print(f"  compare, problems and samples resampled: {two_stage:.3f} s")
    print(f"  plain Python loop: {loop:.2f} s for {args.baseline_resamples} resamples, "
          f"{scaled:.1f} s scaled to {RESAMPLES}")
    print(f"ratio: {scaled / vectorised:.0f} (plain loop / compare); "
          f"target: compare well under 2 s: {'met' if vectorised < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
