"""Append-only JSONL sample files that survive being killed at any point.

Every record is one line written with a single ``write`` and flushed, so after a SIGKILL the file
holds whole records plus at most one torn last line. Opening a file repairs it (cuts the torn
tail) and reports which (prompt_id, sample_index) keys are already done, so a restarted run
writes exactly the missing samples: none lost, none duplicated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

SampleKey = tuple[str, int]


def sample_key(record: dict[str, Any], id_field: str = "prompt_id") -> SampleKey:
    return record[id_field], record["sample_index"]


def repair(path: Path) -> int:
    """Cut a torn last line (one without a newline); return the number of bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return 0
        handle.truncate(end)
        return len(data) - end


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg})") from None


class SampleWriter:
    """Appends records to a JSONL file; knows which keys it already holds."""

    def __init__(self, path: Path, id_field: str = "prompt_id") -> None:
        # id_field: what names the prompt of a record (evaluation results use "question_id").
        self.path = path
        self.id_field = id_field
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = repair(path)
        self.done: set[SampleKey] = set()
        if path.exists():
            self.done = {sample_key(record, id_field) for record in read_records(path)}
        self._handle: TextIO = open(path, "a")  # noqa: SIM115 (closed by close()/__exit__)

    def write(self, record: dict[str, Any]) -> None:
        key = sample_key(record, self.id_field)
        if key in self.done:
            raise ValueError(f"{self.path}: sample {key} written twice")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.done.add(key)

    def close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write a whole JSONL file via a temporary file and a rename; return the record count."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return count


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
