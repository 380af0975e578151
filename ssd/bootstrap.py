"""Paired bootstrap intervals for pass@k, and for the difference of two models' pass@k.

Two models (A, the reference, e.g. the base model; B, e.g. the SSD model) evaluated on the same
problems: each problem gives, per model, n samples of which c passed (``ssd.passk.ProblemResult``;
the order of a problem's flags does not matter to pass@k). Problems are matched by question id.

One bootstrap replicate, the same for A and B (paired):

1. draw P problems with replacement from the P matched problems, each with all its samples;
2. only with ``resample_samples``: for each drawn problem and each model, draw its n samples with
   replacement from its own n samples, i.e. c* ~ Binomial(n, c/n);
3. compute each model's unbiased pass@k (``ssd.passk.pass_at_k``) averaged over the drawn problems,
   and their difference B - A.

Step 1 alone is the default, and it already carries both sources of error: the problem-sampling
error (with 131 problems, about 4 points on a pass rate near 0.5) and the sample-level noise,
which every problem's observed pass@k holds once. The paired draw cancels what the models share
(the same hard and easy problems). Step 2 counts the sample noise a second time (Davison &
Hinkley 1997, Section 3.8: for y = problem effect + sample noise, the two-stage resample's
variance is (s_between + 2 s_within / n) / P against the truth's (s_between + s_within / n) / P),
so its intervals are conservative: on the correlated models of ``tests/test_bootstrap.py`` the
95% interval of the difference covers ~98.5% instead of ~95%. It is offered for readers who want
that margin. Resampling samples alone (problems fixed) would undercover (~92.5% there): problems
solved by all or none of their samples get no spread at all.

Reported, per scope (overall and per difficulty; each scope resampled on its own problems):

* each model's pass@k with its 95% interval, and the difference B - A with its 95% interval: the
  observed value, and the bootstrap replicates' quantiles at levels (tail, 1 - tail). The plain
  percentile interval (tail = 2.5%) is too narrow on a mean over P problems for two reasons the
  t interval corrects: the bootstrap's variance is (P - 1) / P of the unbiased one, and a normal
  quantile stands in for t's. Hesterberg's expanded percentile interval (Hesterberg 2015, "What
  teachers should know about the bootstrap") picks the tail whose normal quantile is
  t_{P-1, 97.5%} * sqrt(P / (P - 1)): 2.35% for 131 problems, 2.03% for 40 (a difficulty).
  Measured on the simulated benchmarks of ``tests/test_bootstrap.py`` (131 problems, two runs
  of 4,000 repetitions): the plain interval covered 94.6-94.9% (pass@1) and 94.3% (pass@5), the
  expanded one 95.0-95.2% and 94.7-94.8%.
* a two-sided p-value for "no difference", dual to that interval: f, the share of replicates on
  the far side of 0 from the observed difference (0 counted on both sides, +1-corrected so it is
  never 0), is read as the tail of an expanded interval whose end sits at 0, and p is 1 minus
  that interval's confidence (``p_value``). So p < 0.05 exactly when 0 is outside the 95%
  interval (up to interpolation between replicates); with no expansion it would be 2 f.

Every scope draws from its own generator, seeded by (``seed``, the scope's name), so a scope's
interval does not depend on which other scopes exist. Pure: numpy in, dataclasses out.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from ssd.passk import UNLABELED, ProblemResult

OVERALL = "overall"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A statistic's value on the data and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedDifference:
    """pass@k of A and of B, and B - A, on one scope."""

    k: int
    a: Interval
    b: Interval
    difference: Interval
    p_value: float


@dataclass(frozen=True)
class Comparison:
    """Model B against model A on their common problems, overall and per difficulty."""

    label_a: str
    label_b: str
    problems: int                  # matched by question id
    only_a: int                    # problems only A was evaluated on (left out)
    only_b: int
    resamples: int
    seed: int
    resample_samples: bool
    confidence: float
    scopes: dict[str, dict[int, PairedDifference]]   # "overall", then each difficulty
    scope_problems: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: scopes keyed by name, then by "pass@<k>"."""
        out = asdict(self)
        out["scopes"] = {scope: {f"pass@{k}": asdict(d) for k, d in by_k.items()}
                         for scope, by_k in self.scopes.items()}
        return out


def problem_results(records: Iterable[Mapping[str, object]]) -> list[ProblemResult]:
    """Per-problem (n, c) from evaluate.py result records (``question_id``, ``difficulty``,
    ``passed``), in first-seen order."""
    counts: dict[str, list[int]] = {}
    levels: dict[str, str | None] = {}
    for record in records:
        qid = str(record["question_id"])
        tally = counts.setdefault(qid, [0, 0])
        tally[0] += 1
        tally[1] += bool(record["passed"])
        levels.setdefault(qid, record.get("difficulty"))  # type: ignore[arg-type]
    return [ProblemResult(qid, levels[qid], n, c) for qid, (n, c) in counts.items()]


# -- the vectorised core ------------------------------------------------------------------------
def _passk_table(ns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct n of ``ns``, table[i, c] = pass@k(n_i, c) for c <= n_i; NaN beyond).

    Each row is ``pass_at_k``'s product taken as a running product over c, so a row costs O(n)
    and only the sample counts present get one (n = 2,000 samples per problem, as lab runs
    have, would otherwise cost minutes)."""
    distinct = np.unique(ns)
    table = np.full((distinct.size, int(distinct.max()) + 1), np.nan)
    for row, n in enumerate(distinct):
        if n < k:  # not estimable: stays NaN
            continue
        # 1 - C(n-c, k)/C(n, k) = 1 - prod_{j<c} (1 - k/(n-j)); the factor at n-j = k is 0, so
        # c > n - k gives exactly 1, as pass_at_k's shortcut does.
        factors = 1.0 - k / (n - np.arange(n, dtype=np.float64))
        table[row, 0] = 0.0
        table[row, 1:n + 1] = 1.0 - np.cumprod(factors)
    return distinct, table


def _scope_rng(seed: int, scope: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(scope.encode())])


def _draws(problems: int, resamples: int, resample_samples: bool, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """The drawn problems of each replicate, (resamples, problems) positions, and, unless the
    samples are redrawn too, how often each problem was drawn (same shape)."""
    picks = rng.integers(0, problems, size=(resamples, problems))
    if resample_samples:
        return picks, None
    offsets = picks + problems * np.arange(resamples)[:, None]
    return picks, np.bincount(offsets.ravel(), minlength=picks.size).reshape(picks.shape)


class _Resampled:
    """One model's problems under a set of replicates: (n, c) on the data, and either how often
    each problem was drawn (problems resampled, each with its own samples) or the redrawn
    (n, c*) of every drawn problem (samples resampled too: c* ~ Binomial(n, c/n))."""

    def __init__(self, results: Sequence[ProblemResult], picks: np.ndarray,
                 counts: np.ndarray | None, rng: np.random.Generator) -> None:
        self.n = np.array([r.n for r in results])
        self.c = np.array([r.c for r in results])
        self.counts = counts
        if counts is None:
            self.drawn_n = self.n[picks]
            self.drawn_c = rng.binomial(self.drawn_n, self.c[picks] / self.drawn_n)

    def pass_at(self, k: int) -> tuple[float, np.ndarray]:
        """pass@k on the data and in each replicate (a replicate's mean over its problems)."""
        distinct, table = _passk_table(self.n, k)
        per_problem = table[np.searchsorted(distinct, self.n), self.c]
        if self.counts is not None:
            return float(per_problem.mean()), self.counts @ per_problem / len(self.n)
        rows = np.searchsorted(distinct, self.drawn_n)
        return float(per_problem.mean()), table[rows, self.drawn_c].mean(axis=1)


def student_t_central(t: float, dof: int) -> float:
    """P(|T| < t) for Student's t with ``dof`` (integer) degrees of freedom, in closed form
    (Abramowitz & Stegun 26.7.3-4: finite sums in cos(theta), theta = atan(t / sqrt(dof)))."""
    theta = math.atan(t / math.sqrt(dof))
    cos, sin = math.cos(theta), math.sin(theta)
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for j in range(1, dof // 2):
            term *= (2 * j - 1) / (2 * j) * cos * cos
            total += term
        return sin * total
    term, total = cos, cos if dof > 1 else 0.0
    for j in range(1, (dof - 1) // 2):
        term *= (2 * j) / (2 * j + 1) * cos * cos
        total += term
    return 2 / math.pi * (theta + sin * total)


def student_t_quantile(central: float, dof: int) -> float:
    """The t with P(|T| < t) = ``central`` (bisection on ``student_t_central``)."""
    low, high = 0.0, 1.0
    while student_t_central(high, dof) < central:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_central(middle, dof) < central else (low, middle)
    return (low + high) / 2


def _expansion(problems: int) -> float:
    """sqrt(P / (P - 1)): the bootstrap's variance of a mean over P problems is (P - 1) / P of
    the unbiased one."""
    return math.sqrt(problems / (problems - 1))


def interval_tail(problems: int, confidence: float = CONFIDENCE) -> float:
    """The quantile level of the interval's lower end (1 - that of its upper end): Hesterberg's
    expanded percentile interval, the level at which a normal quantile equals the t interval's
    multiplier, t_{P-1} * sqrt(P / (P - 1)). The plain (1 - confidence) / 2 below 2 problems."""
    if problems < 2:
        return (1 - confidence) / 2
    t = student_t_quantile(confidence, problems - 1)
    return 1 - NormalDist().cdf(t * _expansion(problems))


def _interval(estimate: float, replicates: np.ndarray, tail: float) -> Interval:
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(estimate), float(low), float(high))


def p_value(observed: float, replicates: np.ndarray, problems: int) -> float:
    """Two-sided bootstrap p-value of "no difference", dual to the expanded interval: the share
    f of replicates on the far side of 0 from ``observed`` (0 counted on both sides; +1-corrected
    so it is never 0), taken as the tail level of an expanded interval and turned into the
    confidence that interval would have, p = 1 - P(|T_{P-1}| < z_{1-f} / sqrt(P / (P - 1))).
    Without the expansion (fewer than 2 problems) p = 2 f. 1 when ``observed`` is 0."""
    if observed == 0:
        return 1.0
    far = np.count_nonzero(replicates <= 0 if observed > 0 else replicates >= 0)
    share = (1 + int(far)) / (1 + len(replicates))
    if share >= 0.5:
        return 1.0
    if problems < 2:
        return 2 * share
    z = NormalDist().inv_cdf(1 - share) / _expansion(problems)
    return 1 - student_t_central(z, problems - 1)


def _paired_scope(a: Sequence[ProblemResult], b: Sequence[ProblemResult], ks: Sequence[int],
                  resamples: int, rng: np.random.Generator, resample_samples: bool,
                  confidence: float) -> dict[int, PairedDifference]:
    picks, counts = _draws(len(a), resamples, resample_samples, rng)  # the same for A and B
    model_a = _Resampled(a, picks, counts, rng)
    model_b = _Resampled(b, picks, counts, rng)
    tail = interval_tail(len(a), confidence)
    out = {}
    for k in ks:
        value_a, reps_a = model_a.pass_at(k)
        value_b, reps_b = model_b.pass_at(k)
        observed, difference = value_b - value_a, reps_b - reps_a
        out[k] = PairedDifference(
            k, _interval(value_a, reps_a, tail), _interval(value_b, reps_b, tail),
            _interval(observed, difference, tail), p_value(observed, difference, len(a)))
    return out


def _scopes(results: Sequence[ProblemResult]) -> dict[str, list[int]]:
    """Positions of each scope's problems: overall, then each difficulty label (sorted easy,
    medium, hard, then others); unlabeled problems only count overall."""
    order = {"easy": 0, "medium": 1, "hard": 2}
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        if r.difficulty and r.difficulty != UNLABELED:
            groups.setdefault(r.difficulty, []).append(i)
    named = sorted(groups, key=lambda d: (order.get(d, 3), d))
    return {OVERALL: list(range(len(results))), **{d: groups[d] for d in named}}


def _check(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: need at least 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must be in (0, 1)")


def compare(a: Sequence[ProblemResult], b: Sequence[ProblemResult], ks: Sequence[int] = (1, 5),
            resamples: int = 10_000, seed: int = 0, label_a: str = "A", label_b: str = "B",
            resample_samples: bool = False, confidence: float = CONFIDENCE) -> Comparison:
    """The paired bootstrap of B against A (see the module docstring) on the problems both were
    evaluated on; ks above a matched problem's sample count are left out. The difficulty of a
    problem is A's label (B's where A has none)."""
    _check(resamples, confidence)
    by_id_b = {r.question_id: r for r in b}
    ids_a = {r.question_id for r in a}
    pairs = [(r, by_id_b[r.question_id]) for r in a if r.question_id in by_id_b]
    if not pairs:
        raise ValueError(f"{label_a} and {label_b} share no question id")
    if any(min(ra.n, rb.n) < 1 for ra, rb in pairs):
        raise ValueError("every matched problem needs at least one sample per model")
    fewest = min(min(ra.n, rb.n) for ra, rb in pairs)
    reported = [k for k in ks if k <= fewest]
    labelled = [ProblemResult(ra.question_id, ra.difficulty or rb.difficulty, ra.n, ra.c)
                for ra, rb in pairs]
    scopes, sizes = {}, {}
    for scope, positions in _scopes(labelled).items():
        rng = _scope_rng(seed, scope)
        scopes[scope] = _paired_scope([labelled[i] for i in positions],
                                      [pairs[i][1] for i in positions], reported, resamples, rng,
                                      resample_samples, confidence)
        sizes[scope] = len(positions)
    return Comparison(label_a, label_b, len(pairs), len(ids_a) - len(pairs),
                      len(by_id_b) - len(pairs), resamples, seed, resample_samples, confidence,
                      scopes, sizes)


def passk_intervals(results: Sequence[ProblemResult], ks: Sequence[int] = (1, 5),
                    resamples: int = 10_000, seed: int = 0, resample_samples: bool = False,
                    confidence: float = CONFIDENCE) -> dict[str, dict[int, Interval]]:
    """One model's pass@k with its bootstrap interval, overall and per difficulty (the draws
    ``compare`` makes for its model A)."""
    _check(resamples, confidence)
    if not results:
        raise ValueError("no problems")
    fewest = min(r.n for r in results)
    out: dict[str, dict[int, Interval]] = {}
    for scope, positions in _scopes(results).items():
        rng = _scope_rng(seed, scope)
        picks, counts = _draws(len(positions), resamples, resample_samples, rng)
        model = _Resampled([results[i] for i in positions], picks, counts, rng)
        tail = interval_tail(len(positions), confidence)
        out[scope] = {k: _interval(*model.pass_at(k), tail) for k in ks if k <= fewest}
    return out


# -- presentation -------------------------------------------------------------------------------
def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def comparison_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings, percentage points) for a Markdown table: one row per scope and
    k with both models' pass@k and interval, the difference, its interval and p-value."""
    percent = round(100 * comparison.confidence)
    a, b = comparison.label_a, comparison.label_b
    header = ["scope", "problems", "k", f"{a} pass@k [{percent}% CI]",
              f"{b} pass@k [{percent}% CI]", f"{b} - {a} [{percent}% CI]", "p"]
    rows = []
    for scope, by_k in comparison.scopes.items():
        for k, d in by_k.items():
            rows.append([
                scope, str(comparison.scope_problems[scope]), str(k),
                f"{_points(d.a.estimate)} [{_points(d.a.low)}, {_points(d.a.high)}]",
                f"{_points(d.b.estimate)} [{_points(d.b.low)}, {_points(d.b.high)}]",
                f"{100 * d.difference.estimate:+.1f} [{100 * d.difference.low:+.1f}, "
                f"{100 * d.difference.high:+.1f}]",
                f"{d.p_value:.3g}"])
    return header, rows


def comparison_note(comparison: Comparison) -> str:
    """One sentence saying how the intervals were made (for under a report's table)."""
    within = " and samples within each problem" if comparison.resample_samples else ""
    unmatched = ""
    if comparison.only_a or comparison.only_b:
        unmatched = (f"; left out: {comparison.only_a} problems only {comparison.label_a} and "
                     f"{comparison.only_b} only {comparison.label_b} was evaluated on")
    return (f"Paired bootstrap over the {comparison.problems} common problems{within} "
            f"({comparison.resamples} resamples, seed {comparison.seed}); expanded percentile "
            f"intervals; p: the confidence at which the interval of the difference reaches 0, "
            f"subtracted from 1{unmatched}.")
