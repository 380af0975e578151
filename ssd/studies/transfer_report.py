"""The ``transfer`` study's report: Table 5 from the base and the SSD model's transfer suites
(``ssd.analysis.transfer``: every set's difference with its paired interval, failure counts, the
paper's row for a paper preset). Written: ``transfer.md``, ``transfer.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.analysis import INDEX, transfer_report
from ssd.config import ConfigError
from ssd.records import write_json_atomic
from ssd.studies.results import stages_with
from ssd.studies.spec import StageSpec

REPORT_FILE = "transfer.md"


def check(cfg: DictConfig, specs: Sequence[StageSpec]) -> None:
    roles = [s.role for s in specs]
    if roles.count("ssd") != 1 or roles.count("base") != 1:
        raise ConfigError("study.stages: the transfer report needs one ssd and one base "
                          "evaluation, each of a suite (eval=transfer)")


def suite_index(payload: Mapping[str, Any], role: str) -> dict[str, Any]:
    [stage] = stages_with(payload, role)
    return json.loads((Path(stage["runs"][-1]["run_dir"]) / INDEX).read_text())


def write(cfg: DictConfig, payload: Mapping[str, Any], out: Path) -> Path:
    found = transfer_report(cfg, suite_index(payload, "base"), suite_index(payload, "ssd"), out)
    write_json_atomic(out / INDEX, found)
    return out / REPORT_FILE
