"""Prompt pools: load unlabeled problem statements, de-duplicate, give them stable ids, format.

A pool is a local JSON list or JSONL file of records with a statement field (the formats in
``../shared/data``), or ``hub:<dataset id>`` loaded with HF ``datasets`` (the paper's
``microsoft/rStar-Coder``, config ``seed_sft``). As in the paper (Section C.1), duplicates are
removed by exact string match on the whitespace-normalised statement. A prompt's id is a hash of
that normalised statement, so it does not change with the pool's order, ``limit`` or sharding.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTRUCT_SYSTEM_PROMPT = (
    "You are an expert competitive programmer. Solve the problem below in Python 3. "
    "Read the input from standard input and write the answer to standard output. "
    "Put your complete solution in a single markdown code block (```python ... ```)."
)


class DataError(ValueError):
    """A prompt pool cannot be read; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    statement: str


@dataclass(frozen=True)
class Pool:
    prompts: list[Prompt]
    records_read: int
    duplicates_dropped: int
    empty_dropped: int


def normalise_whitespace(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def prompt_id(statement: str) -> str:
    return hashlib.sha256(normalise_whitespace(statement).encode()).hexdigest()[:16]


def deduplicate(statements: list[str]) -> tuple[list[Prompt], int, int]:
    """Keep the first of each whitespace-normalised statement; drop empty ones.

    Returns the prompts in pool order, the number of duplicates dropped and of empties dropped.
    """
    seen: set[str] = set()
    prompts: list[Prompt] = []
    duplicates = empties = 0
    for statement in statements:
        key = normalise_whitespace(statement)
        if not key:
            empties += 1
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        prompts.append(Prompt(prompt_id=prompt_id(statement), statement=statement.strip()))
    return prompts, duplicates, empties


def _read_local(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"data.path={path}: line {number} is not valid JSON "
                                f"({error.msg}); fix or remove that line") from None
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"data.path={path}: not valid JSON at line {error.lineno} "
                        f"({error.msg}); use a JSON list or a .jsonl file") from None
    if not isinstance(data, list):
        raise DataError(f"data.path={path}: expected a JSON list of records, got "
                        f"{type(data).__name__}")
    return data


def _read_hub(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    return list(load_dataset(dataset, config, split=split))


def load_pool(path: str, field: str, limit: int | None = None, hub_config: str | None = None,
              hub_split: str = "train") -> Pool:
    """Read, de-duplicate and cut a prompt pool (``limit`` applies after de-duplication)."""
    if path.startswith("hub:"):
        records = _read_hub(path.removeprefix("hub:"), hub_config, hub_split)
    else:
        records = _read_local(Path(path))
    statements = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or field not in record:
            raise DataError(f"data.path={path}: record {index} has no field '{field}'; "
                            "set data.field to the name of the problem-statement field")
        statements.append(str(record[field] or ""))
    prompts, duplicates, empties = deduplicate(statements)
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise DataError(f"data.path={path}: no non-empty statements in field '{field}'")
    return Pool(prompts, len(records), duplicates, empties)


def chat_messages(statement: str) -> list[dict[str, str]]:
    """The paper's single-turn task presentation (Section C.1), for instruct and thinking models.

    A system message asks for a Python solution in one markdown code block; the statement is the
    user turn. No chain-of-thought instruction is added for anyone: a thinking model's own chat
    template opens its reasoning block.
    """
    return [
        {"role": "system", "content": INSTRUCT_SYSTEM_PROMPT},
        {"role": "user", "content": statement},
    ]
