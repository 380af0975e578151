"""Which prompts of a pool overlap which problems of an evaluation set: word 8-grams on normalised
statements, as open-r1's decontamination (``scripts/decontaminate.py``, huggingface/open-r1#416:
226 of 1,800 training prompts overlapped LiveCodeBench).

Normalisation (``normalise``): HTML entities decoded and tags dropped (LeetCode statements), LaTeX
commands dropped (``\\le``, ``\\ldots``: Codeforces and AtCoder), lowercase, every run of
characters that are not letters or digits (punctuation, ``$``, ``_``, ``^``, markdown) turned
into one space. open-r1 only lowercases and collapses whitespace, so there ``$n$`` and ``n`` or
``10^5`` and ``10<sup>5</sup>`` never match; here the same statement matches whichever site's
markup it comes in.

open-r1 calls a prompt contaminated when it shares *any* 8-gram with an evaluation problem. On
competitive-programming statements that flags most of a pool by template text alone: 265 of the
408 shipped Codeforces prompts share an 8-gram with the 279 LiveCodeBench problems of
2024-08..2025-01 (the commonest, "the sum of n over all test cases", is in 174 of them), 395
with release_v5's 879. So an overlap here needs evidence beyond template text (both counts are
reported):

* **evidence** is a shared 8-gram that is not template text: found in fewer than
  ``TEMPLATE_EVAL_STATEMENTS`` distinct statements of the evaluation sets (a platform's
  input-format sentences are in many) and in fewer than ``TEMPLATE_POOL_PROMPTS`` prompts of the
  pool (its own wrappers and conventions; two are allowed, since exact-match de-duplication
  leaves near-duplicate pairs that may both copy an evaluation problem), with at least one word
  of two letters or more (not sample data or formula soup such as "0 0 0 1 1 1 0 0");
* a prompt **overlaps** an evaluation problem when they share at least ``MIN_SHARED`` distinct
  evidence 8-grams. Measured on the shipped pools against LiveCodeBench release_v5, with samples
  of each band read by eye: Codeforces and CodeContests prompts (none a copy of an LCB problem;
  the 12 at 5 or more share stock phrasing) share at most 12 with one, and 5 or more in 7 of 408
  and 5 of 165 prompts; LeetCode
  prompts that restate an LCB problem in other words share from 6 up (one seen at 3), distinct
  problems that open with the same setup sentence 3 to ~30. 5 drops those few lookalikes rather
  than keep copies.

Pure: statements in, overlaps out. The statements come from the evaluation stage's loader
(``ssd.evaluation.eval_set_problems``), which the entry scripts hand to the stages.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ssd.data.prompts import Prompt

NGRAM = 8
TEMPLATE_EVAL_STATEMENTS = 2
TEMPLATE_POOL_PROMPTS = 3
MIN_SHARED = 5

# The HTML tags statements carry (LeetCode's), by name: a bare "<[^>]*>" would also eat the text
# between "1 <= n" and "a > b".
_TAG = re.compile(r"</?(?:a|b|i|u|p|br|em|h[1-6]|li|ol|ul|pre|sub|sup|code|font|img|span|div|"
                  r"strong|table|tbody|thead|tr|td|th)\b[^<>]*>", re.IGNORECASE)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_NOT_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"(?:^| )[^\W\d_]{2,}(?: |$)")  # a word of two or more letters


@dataclass(frozen=True)
class EvalProblem:
    """One problem of an evaluation set: which set (as named in the config), its id, its text."""

    benchmark: str
    question_id: str
    statement: str


# An evaluation set's problems from its name in data.decontaminate (or a file): what the entry
# scripts hand the stages, which may not load benchmarks themselves (tests/test_layers.py).
EvalSetLoader = Callable[[str], list[EvalProblem]]


@dataclass(frozen=True)
class Match:
    """A prompt against one evaluation problem: non-template 8-grams shared, and the first."""

    benchmark: str
    question_id: str
    shared: int
    example: str


@dataclass(frozen=True)
class Overlap:
    """A prompt that overlaps evaluation problems, its strongest match first."""

    prompt_id: str
    matches: tuple[Match, ...]


@dataclass(frozen=True)
class PoolCheck:
    checked: int                     # prompts checked
    any_ngram: tuple[str, ...]       # prompt ids sharing any 8-gram at all (open-r1's rule)
    overlaps: tuple[Overlap, ...]    # prompts overlapping by this module's rule, in pool order

    @property
    def overlapping(self) -> set[str]:
        return {o.prompt_id for o in self.overlaps}


def normalise(text: str) -> str:
    text = _TAG.sub(" ", html.unescape(text))
    text = _LATEX_COMMAND.sub(" ", text).lower()
    return " ".join(_NOT_WORD.sub(" ", text).split())


def _grams(normalised: str, n: int) -> list[str]:
    words = normalised.split()
    return list(dict.fromkeys(" ".join(words[i:i + n]) for i in range(len(words) - n + 1)))


def ngrams(text: str, n: int = NGRAM) -> list[str]:
    """The distinct word n-grams of the normalised text, in order of first appearance."""
    return _grams(normalise(text), n)


def check_pool(prompts: Sequence[Prompt], problems: Sequence[EvalProblem], n: int = NGRAM,
               min_shared: int = MIN_SHARED) -> PoolCheck:
    """Every prompt against every problem (see the module docstring for the rule). A problem in
    two of the sets (one statement, two entries) counts once towards the template rule."""
    index: dict[str, set[int]] = {}
    statements: dict[str, set[str]] = {}  # n-gram -> the distinct statements holding it
    for position, problem in enumerate(problems):
        text = normalise(problem.statement)
        for gram in _grams(text, n):
            index.setdefault(gram, set()).add(position)
            statements.setdefault(gram, set()).add(text)
    prompt_grams = [ngrams(p.statement, n) for p in prompts]
    in_prompts = Counter(gram for grams in prompt_grams for gram in grams)
    any_ngram, overlaps = [], []
    for prompt, grams in zip(prompts, prompt_grams, strict=True):
        found = [gram for gram in grams if gram in index]
        if not found:
            continue
        any_ngram.append(prompt.prompt_id)
        evidence = [gram for gram in found if len(statements[gram]) < TEMPLATE_EVAL_STATEMENTS
                    and in_prompts[gram] < TEMPLATE_POOL_PROMPTS and _WORD.search(gram)]
        shared: dict[int, list[str]] = {}
        for gram in evidence:
            for position in index[gram]:
                shared.setdefault(position, []).append(gram)
        matches = sorted((Match(problems[i].benchmark, problems[i].question_id, len(grams_),
                                grams_[0])
                          for i, grams_ in shared.items() if len(grams_) >= min_shared),
                         key=lambda m: (-m.shared, m.benchmark, m.question_id))
        if matches:
            overlaps.append(Overlap(prompt.prompt_id, tuple(matches)))
    return PoolCheck(len(prompts), tuple(any_ngram), tuple(overlaps))


def drop_overlapping(prompts: Sequence[Prompt], check: PoolCheck) -> list[Prompt]:
    """The prompts that overlap no evaluation problem, in pool order."""
    overlapping = check.overlapping
    return [p for p in prompts if p.prompt_id not in overlapping]


def check_record(check: PoolCheck, sets: Sequence[str]) -> dict[str, object]:
    """What a run record says about the check: the rule, counts (per set too) and every
    overlapping prompt with its matches."""
    by_set = Counter(name for o in check.overlaps for name in {m.benchmark for m in o.matches})
    problems_hit = {name: len({m.question_id for o in check.overlaps for m in o.matches
                               if m.benchmark == name}) for name in sets}
    return {
        "sets": list(sets),
        "rule": {"ngram": NGRAM, "min_shared": MIN_SHARED,
                 "template_eval_statements": TEMPLATE_EVAL_STATEMENTS,
                 "template_pool_prompts": TEMPLATE_POOL_PROMPTS},
        "checked": check.checked,
        "shares_any_ngram": len(check.any_ngram),
        "overlapping": len(check.overlaps),
        "overlapping_by_set": {name: by_set.get(name, 0) for name in sets},
        "problems_hit": problems_hit,
        "overlaps": [{"prompt_id": o.prompt_id, "matches": [asdict(m) for m in o.matches]}
                     for o in check.overlaps],
    }
