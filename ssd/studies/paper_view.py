"""The paper view: every ``main`` and ``transfer`` study result under ``runs_dir`` in Table 2's
and Table 5's layouts, one row per model (the five paper presets first, then any other model a
study ran), each cell "ours (paper)", a missing result marked "–", each row linking its study's
report. The newest study of a model wins. Written: ``paper.md``, ``paper.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.analysis import COLUMN_ORDER, PAPER_TABLE5
from ssd.records import write_json_atomic
from ssd.studies.paper_numbers import PAPER_TABLE2, TABLE2_COLUMNS
from ssd.studies.results import percent
from ssd.tables import markdown_table

REPORT_FILE, JSON_FILE = "paper.md", "paper.json"
BENCHMARKS = ("lcb_v6", "lcb_v5")
MISSING = "–"


def newest_studies(runs_dir: Path, report: str) -> dict[str, Path]:
    """Model (experiment, else model preset) -> the folder of its newest study with ``report``."""
    found: dict[str, tuple[float, Path]] = {}
    for path in sorted((runs_dir / "study").rglob("study.json")):
        payload = json.loads(path.read_text())
        if payload.get("report") != report:
            continue
        who = payload.get("experiment") or payload.get("model")
        stamp = path.stat().st_mtime
        if who not in found or stamp > found[who][0]:
            found[who] = (stamp, path.parent)
    return {who: folder for who, (_, folder) in found.items()}


def _models(found: Mapping[str, Path]) -> list[str]:
    return [*PAPER_TABLE2, *sorted(m for m in found if m not in PAPER_TABLE2)]


def _link(who: str, folder: Path | None, report: str, out: Path) -> str:
    if folder is None:
        return who
    return f"[{who}]({os.path.relpath(folder / report, out)})"


def _cell(ours: float | None, paper: float | None) -> str:
    mine = MISSING if ours is None else percent(ours)
    return mine if paper is None else f"{mine} ({paper:.1f})"


def table2_measured(folder: Path, benchmark: str) -> dict[str, dict[str, float]] | None:
    """base / ssd -> column -> value, from a main study's main.json (None when absent)."""
    path = folder / "main.json"
    if not path.is_file():
        return None
    for section in json.loads(path.read_text())["benchmarks"]:
        if section["benchmark"] != benchmark:
            continue
        values: dict[str, dict[str, float]] = {"base": {}, "ssd": {}}
        for scope, by_k in section["comparison"]["scopes"].items():
            for k, d in by_k.items():
                values["base"][f"{k} {scope}"] = d["a"]["estimate"]
                values["ssd"][f"{k} {scope}"] = d["b"]["estimate"]
        return values
    return None


def table2_view(found: Mapping[str, Path], benchmark: str, out: Path
                ) -> tuple[list[str], list[list[str]]]:
    header = ["model", "", *TABLE2_COLUMNS]
    body = []
    for who in _models(found):
        folder = found.get(who)
        measured = table2_measured(folder, benchmark) if folder else None
        paper = PAPER_TABLE2.get(who, {}).get(benchmark)
        for role, label in (("base", "base"), ("ssd", "+SSD")):
            ours = (measured or {}).get(role, {})
            body.append([_link(who, folder, "report.md", out) if role == "base" else "", label,
                         *(_cell(ours.get(c), None if paper is None else paper[role][i])
                           for i, c in enumerate(TABLE2_COLUMNS))])
    return header, body


def table5_view(found: Mapping[str, Path], out: Path) -> tuple[list[str], list[list[str]]]:
    header = ["model", "", *COLUMN_ORDER]
    body = []
    for who in [*PAPER_TABLE5, *sorted(m for m in found if m not in PAPER_TABLE5)]:
        folder = found.get(who)
        sets: dict[str, Any] = {}
        if folder is not None and (folder / "transfer.json").is_file():
            sets = {r["column"]: r for r in json.loads(
                (folder / "transfer.json").read_text())["sets"]}
        paper = PAPER_TABLE5.get(who)
        for i, (role, label) in enumerate((("base", "base"), ("ssd", "+SSD"))):
            body.append([_link(who, folder, "transfer.md", out) if role == "base" else "", label,
                         *(_cell(sets[c][role]["estimate"] if c in sets else None,
                                 None if paper is None else paper[i][j])
                           for j, c in enumerate(COLUMN_ORDER))])
    return header, body


def write(cfg: DictConfig, payload: Mapping[str, Any], out: Path) -> Path:
    runs_dir = Path(cfg.runs_dir)
    mains, transfers = newest_studies(runs_dir, "main"), newest_studies(runs_dir, "transfer")
    lines = ["# The paper's tables from this project's runs", "",
             f"Every main and transfer study under `{runs_dir}`; each cell is ours (the "
             f"paper's), in percent; {MISSING}: no result yet (`python study.py study=main "
             "experiment=<model>` makes one).", ""]
    tables: dict[str, Any] = {}
    for benchmark in BENCHMARKS:
        header, body = table2_view(mains, benchmark, out)
        tables[f"table2/{benchmark}"] = {"header": header, "rows": body}
        lines += [f"## Table 2: {benchmark}", "", markdown_table(header, body), ""]
    header, body = table5_view(transfers, out)
    tables["table5"] = {"header": header, "rows": body}
    lines += ["## Table 5: transfer", "", markdown_table(header, body), ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text("\n".join(lines))
    write_json_atomic(out / JSON_FILE, {"main": {k: str(v) for k, v in mains.items()},
                                        "transfer": {k: str(v) for k, v in transfers.items()},
                                        "tables": tables})
    return out / REPORT_FILE
