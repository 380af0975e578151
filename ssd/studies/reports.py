"""Every study report by name (``study.report``): its check of the declared stages and its
writer (study config, study.json's payload, the study's folder -> the report's path)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.studies import main_report, paper_view, stress_report, transfer_report
from ssd.studies.spec import StageSpec


@dataclass(frozen=True)
class Report:
    check: Callable[[DictConfig, Sequence[StageSpec]], None]
    write: Callable[[DictConfig, Mapping[str, Any], Path], Path]
    runs_stages: bool = True     # False: a view over results already under runs_dir


def _nothing(cfg: DictConfig, payload: Mapping[str, Any], out: Path) -> Path:
    return out / "study.json"


REPORTS: dict[str, Report] = {
    "main": Report(main_report.check, main_report.write),
    "stress": Report(stress_report.check, stress_report.write),
    "transfer": Report(transfer_report.check, transfer_report.write),
    "paper": Report(lambda cfg, specs: None, paper_view.write, runs_stages=False),
    "none": Report(lambda cfg, specs: None, _nothing),   # the stages only (study.json)
}
