"""Tables, written one way: every report's markdown table is ``markdown_table(header, rows)``,
and the same (header, rows) pair is what ``ssd.tracking.log_wandb`` logs as a W&B table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "–"


def cell(value: Any) -> str:
    """A value as one markdown cell: None as "–", a pipe escaped, on one line."""
    if value is None:
        return MISSING
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
