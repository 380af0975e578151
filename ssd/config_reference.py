"""The configuration reference: every group, option and key of ``conf/`` with its default and
comment, as one markdown page (the documentation site builds it from the files on every build,
so it cannot drift from them).

A key's comment is the comment block right above it plus its own end-of-line comment, as the
files write them; a key's name is its full path in the composed config (a group's keys sit under
the group's package, ``decoding.T``; ``# @package`` lines are honoured).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ssd.tables import markdown_table

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.-]*)\s*:(?P<rest>.*)$")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")


@dataclass(frozen=True)
class Entry:
    key: str       # full path in the composed config
    default: str   # as written (interpolations kept)
    comment: str


@dataclass(frozen=True)
class Option:
    group: str     # "" for an entry point's own file
    name: str
    path: Path
    header: str    # the file's opening comment
    defaults: list[str]
    entries: list[Entry]


def _inline_comment(rest: str) -> str:
    """The end-of-line comment of ``key: value  # comment`` (a '#' inside quotes is text)."""
    quote = None
    for i, char in enumerate(rest):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1:].strip()
    return ""


def line_comments(text: str) -> dict[str, str]:
    """Dotted key (relative to the file) -> its comment (block above + end of line)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if not comment.startswith("---"):  # a section rule, not about the next key
                block.append(comment)
            continue
        match = _KEY.match(line)
        if not stripped or not match or stripped.startswith("-"):
            block = [] if not stripped else block
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(key for _, key in stack), match["key"]])
        stack.append((indent, match["key"]))
        text_parts = [part for part in (" ".join(block), _inline_comment(match["rest"])) if part]
        comments[path] = " ".join(text_parts)
        block = []
    return comments


def header_comment(text: str) -> str:
    """The file's opening comment, its lines kept (some are aligned tables of commands)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not _PACKAGE.match(line):
            lines.append(line[1:].removeprefix(" ").rstrip())
    return "\n".join(lines).strip("\n")


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _package(group: str, text: str) -> str:
    for line in text.splitlines()[:5]:
        if match := _PACKAGE.match(line):
            return "" if match[1] == "_global_" else match[1]
    return group.replace("/", ".")


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{}"
    return str(value)


def load_option(path: Path, conf_dir: Path = CONF_DIR) -> Option:
    text = path.read_text()
    group = "/".join(path.relative_to(conf_dir).parts[:-1])
    package = _package(group, text) if group else ""
    container = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    assert isinstance(container, dict)
    defaults = [next(iter(d.items())) if isinstance(d, dict) else (d, None)
                for d in container.pop("defaults", [])]
    container.pop("hydra", None)  # Hydra's own settings: documented by Hydra
    comments = line_comments(text)
    entries = []
    for key, value in _flatten(container, ""):
        # a key inside a flow mapping ({T: 1.6, ...}) has no line: its parent's comment
        comment = comments[key] if key in comments else comments.get(key.rsplit(".", 1)[0], "")
        full = f"{package}.{key}" if package else key
        entries.append(Entry(full, _render(value), comment))
    return Option(group, path.stem, path, header_comment(text),
                  [f"{g}={o}" if o is not None else str(g) for g, o in defaults], entries)


def options(conf_dir: Path = CONF_DIR) -> list[Option]:
    """Every config file: the entry points' own first, then each group's options."""
    files = sorted(conf_dir.glob("*.yaml")) + sorted(
        p for p in conf_dir.rglob("*.yaml") if p.parent != conf_dir)
    return [load_option(p, conf_dir) for p in files]


def reference_markdown(conf_dir: Path = CONF_DIR) -> str:
    """The whole reference page."""
    out = ["# Configuration reference", "",
           "Generated from `conf/` on every build of this site: each entry point's own config, "
           "then every group (`group=option` on the command line) with each option's keys, "
           "defaults (interpolations as written) and comments. Keys are full paths, as "
           "overrides name them (`decoding.T=1.6`).", ""]
    current_group = None
    for option in options(conf_dir):
        if option.group != current_group:
            current_group = option.group
            out += [f"## {'Entry points' if not option.group else 'Group `' + option.group + '`'}",
                    ""]
        title = f"`{option.name}.py`" if not option.group else f"`{option.group}={option.name}`"
        out += [f"### {title}", "", f"`{option.path.relative_to(conf_dir.parent)}`", ""]
        if option.header:
            out += ["```text", option.header, "```", ""]
        if option.defaults:
            out += ["Defaults: " + ", ".join(f"`{d}`" for d in option.defaults), ""]
        if option.entries:
            out += [markdown_table(["key", "default", "comment"],
                                   [[f"`{e.key}`", f"`{e.default}`", e.comment]
                                    for e in option.entries]), ""]
    return "\n".join(out) + "\n"
