"""What a study's reports read: its evaluate runs (metrics.json, results.jsonl) by role and label.

``study.json`` lists every stage run with its run directory (and a sweep's other jobs under
``also``); the numbers are read from the runs themselves, never copied into the study.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.bootstrap import ProblemResult, problem_results
from ssd.records import read_records

OVERALL = "overall"
DIFFICULTIES = ("easy", "medium", "hard")


@dataclass
class EvalRun:
    """One evaluate.py run: its metrics and, read on first use, its per-problem outcomes."""

    run_dir: Path
    metrics: dict[str, Any]
    checkpoint: str | None = None
    step: int | None = None
    _results: list[ProblemResult] | None = field(default=None, repr=False)

    @property
    def t(self) -> float:
        return float(self.metrics["decoding"]["T"])

    @property
    def benchmark(self) -> str:
        return str(self.metrics["eval"]["name"])

    def value(self, k: int, scope: str = OVERALL) -> float | None:
        """pass@k on a scope (``overall`` or a difficulty); None where not measured."""
        block = (self.metrics.get("overall") if scope == OVERALL
                 else (self.metrics.get("per_difficulty") or {}).get(scope))
        found = None if block is None else block.get(f"pass@{k}")
        return None if found is None else float(found)

    def scopes(self) -> list[str]:
        labelled = set(self.metrics.get("per_difficulty") or {})
        return [OVERALL, *(d for d in DIFFICULTIES if d in labelled)]

    @property
    def results(self) -> list[ProblemResult]:
        if self._results is None:
            self._results = problem_results(read_records(self.run_dir / "results.jsonl"))
        return self._results


def read_run(run_dir: str | Path, **fields: Any) -> EvalRun:
    folder = Path(run_dir)
    return EvalRun(folder, json.loads((folder / "metrics.json").read_text()), **fields)


def stage_runs(stage: Mapping[str, Any]) -> Iterator[EvalRun]:
    """Every evaluate run of a study stage: each checkpoint's run and a sweep's other jobs."""
    for run in stage["runs"]:
        for folder in [run["run_dir"], *run.get("also", [])]:
            yield read_run(folder, checkpoint=run.get("checkpoint"), step=run.get("step"))


def stages_with(payload: Mapping[str, Any], role: str, **labels: Any) -> list[dict[str, Any]]:
    """The study's evaluate stages of ``role`` whose labels include ``labels``."""
    return [s for s in payload["stages"] if s["script"] == "evaluate" and s["role"] == role
            and all(s["labels"].get(k) == v for k, v in labels.items())]


def runs_of(payload: Mapping[str, Any], role: str, **labels: Any) -> list[EvalRun]:
    return [run for stage in stages_with(payload, role, **labels) for run in stage_runs(stage)]


def one_run(payload: Mapping[str, Any], role: str, **labels: Any) -> EvalRun | None:
    found = runs_of(payload, role, **labels)
    return found[-1] if found else None   # the last checkpoint of the stage (``final``)


def label_values(payload: Mapping[str, Any], name: str) -> list[Any]:
    """Every value of an ``each`` label across the study's stages, in declared order."""
    seen: list[Any] = []
    for stage in payload["stages"]:
        value = stage["labels"].get(name)
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def generate_record(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sampling record (run.json) of the study's first generate stage."""
    for stage in payload["stages"]:
        if stage["script"] == "generate" and stage["runs"]:
            path = Path(stage["runs"][0]["run_dir"]) / "run.json"
            return json.loads(path.read_text()) if path.is_file() else None
    return None


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def signed_points(value: float) -> str:
    return f"{100 * value:+.1f}"


def scope_order(scopes: Sequence[str]) -> list[str]:
    """overall, easy, medium, hard, then any other label (``unlabeled``) as found."""
    known = [s for s in (OVERALL, *DIFFICULTIES) if s in scopes]
    return known + [s for s in scopes if s not in known]
