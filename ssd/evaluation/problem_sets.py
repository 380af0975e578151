"""Which LiveCodeBench problems a number is about: the named problem sets, defined in one place.

Published work calls two different sets "LCB v6": the SSD paper's evaluation code takes contest
dates 2025-02-01..2025-05-31 of `code_generation_lite` (131 problems; the data end in April),
while TRL's SSD evaluation scores `test6.jsonl`, the problems release_v6 added to release_v5 (175,
44 of them dated January 2025). A set here is a contest-date window, a release range, or both;
every evaluation records the set's name, definition, problem count and the sha256 of its sorted
question ids (`set_record`), so two numbers can be compared only when they are about one set.

Release membership is not in the dataset's rows: it comes from the problem metadata this project
ships (`data/benchmarks/lcb_problems.csv`, see data/README.md), which also lets the definitions be
tested without the hub.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ssd.config import REPO_ROOT

METADATA_PATH = REPO_ROOT / "data" / "benchmarks" / "lcb_problems.csv"
# The releases the shipped metadata tells apart, oldest first (release_v5 covers v1..v5).
RELEASES = ("release_v5", "release_v6")


@dataclass(frozen=True)
class ProblemMeta:
    question_id: str
    contest_date: str  # YYYY-MM-DD, the dataset's own contest date
    release: str  # the first release (of RELEASES) that holds the problem
    difficulty: str
    platform: str


@cache
def shipped_metadata(path: Path = METADATA_PATH) -> dict[str, ProblemMeta]:
    """The shipped metadata by question id (every problem of release_v6)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {row["question_id"]: ProblemMeta(**row) for row in rows}


@dataclass(frozen=True)
class ProblemSet:
    """Problems dated in [start_date, end_date] (inclusive days; None: unbounded) that were added
    by a release after ``releases[0]`` (None: from the first) up to ``releases[1]``."""

    name: str
    start_date: str | None = None
    end_date: str | None = None
    releases: tuple[str | None, str] | None = None

    @property
    def definition(self) -> str:
        parts = []
        if self.start_date is not None or self.end_date is not None:
            parts.append(f"contest dates {self.start_date or '...'}..{self.end_date or '...'}")
        if self.releases is not None:
            after, through = self.releases
            parts.append(f"{through} minus {after}" if after else f"in {through}")
        return " and ".join(parts) + " of code_generation_lite" if parts else "every problem"

    def contains(self, question_id: str, contest_date: str | None) -> bool:
        if self.start_date is not None or self.end_date is not None:
            if not contest_date:  # undated problems are outside every bounded window
                return False
            day = contest_date[:10]
            if (self.start_date is not None and day < self.start_date) or (
                    self.end_date is not None and day > self.end_date):
                return False
        if self.releases is not None:
            # The metadata lists every problem up to the newest release it knows, so an id it
            # lacks is in none of them.
            meta = shipped_metadata().get(question_id)
            if meta is None:
                return False
            after, through = self.releases
            first = RELEASES.index(meta.release)
            return (after is None or first > RELEASES.index(after)) and \
                first <= RELEASES.index(through)
        return True


PROBLEM_SETS: dict[str, ProblemSet] = {
    # The paper's window (its evaluation code keeps contest months 2025-02..2025-05).
    "lcb_v6": ProblemSet("lcb_v6", "2025-02-01", "2025-05-31"),
    # TRL's "LCB v6": test6.jsonl, the release_v6 delta.
    "lcb_v6_delta": ProblemSet("lcb_v6_delta", releases=("release_v5", "release_v6")),
    # The paper's v5 (Section C.1: "374 problems, August 2024 to February 2025", the split of
    # rStar-Coder), on today's code_generation_lite.
    "lcb_v5": ProblemSet("lcb_v5", "2024-08-01", "2025-02-28"),
}


def named_set_ids(name: str) -> list[str] | None:
    """The question ids of a named set by the shipped metadata (None: not a named set)."""
    if name not in PROBLEM_SETS:
        return None
    return select_ids(PROBLEM_SETS[name], shipped_metadata().values())


def named_set_size(name: str) -> int | None:
    """How many problems a named set holds by the shipped metadata (None: not a named set)."""
    found = named_set_ids(name)
    return None if found is None else len(found)


def custom_problem_set(start_date: str | None, end_date: str | None,
                       releases: tuple[str | None, str] | None) -> ProblemSet:
    """A set from config values, named by its definition (so equal definitions share a name)."""
    unnamed = ProblemSet("", start_date, end_date, releases)
    return ProblemSet(f"custom: {unnamed.definition}", start_date, end_date, releases)


def select_ids(problem_set: ProblemSet, metadata: Iterable[ProblemMeta]) -> list[str]:
    """The question ids of ``metadata`` in the set, sorted."""
    return sorted(m.question_id for m in metadata if problem_set.contains(m.question_id,
                                                                          m.contest_date))


def id_digest(question_ids: Iterable[str]) -> str:
    """sha256 of the sorted question ids, one per line."""
    return hashlib.sha256("\n".join(sorted(question_ids)).encode()).hexdigest()


def set_record(name: str, definition: str, question_ids: list[str]) -> dict[str, object]:
    """What every evaluation record states about its problem set."""
    return {"name": name, "definition": definition, "problems": len(question_ids),
            "id_digest": id_digest(question_ids)}
