"""Report text from Jinja2 templates (the ``*.md.j2`` files beside this one): the words and the
layout live in the template, the numbers reach it through a few formatting filters, and every
table is ``markdown_table`` (``ssd.tables``), built from (header, rows) by a short builder beside
the report's code. A name the template uses and the report does not give is an error, not a
blank."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent   # the .md.j2 files beside this one


def pct(value: float) -> str:
    """A share as a percentage: 0.0833 -> 8.33%."""
    return f"{100 * value:.2f}%"


def signed(value: float) -> str:
    """A difference of shares in signed percentage points, unit left out: 0.047 -> +4.70."""
    return f"{100 * value:+.2f}"


def pp(value: float) -> str:
    """A difference of shares in signed percentage points: 0.047 -> +4.70 pp."""
    return f"{signed(value)} pp"


@cache
def environment() -> Any:
    import jinja2

    from ssd.tables import markdown_table

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(pct=pct, pp=pp, signed=signed, fmt=format)
    env.globals["table"] = markdown_table
    return env


def render(template: str, **values: Any) -> str:
    """``ssd/templates/<template>`` filled with ``values``."""
    return environment().get_template(template).render(**values)
