"""The program in a model response: the project's extraction rule, shared by the stages (the
evaluate stage scores it; the generate stage counts the samples that hold one).

Rules, in order:

1. Reasoning is removed first, so code sketched while thinking never counts. Closed
   `<think>...</think>` spans are deleted; a `</think>` with no opening tag (chat templates that
   put `<think>` in the prompt) drops everything before it; an opening `<think>` that is never
   closed means the model never reached its answer -> failure "unfinished_thinking".
2. The answer is the LAST fenced code block, whatever its language tag, which is what
   LiveCodeBench's own extraction returns (the last pair of fence lines). Keeping that rule keeps
   scores comparable with published numbers; a trailing non-Python block is therefore scored as
   the answer (and usually fails).
3. Fences follow CommonMark: a line of three or more backticks or tildes (any indentation),
   optionally followed by an info string, closed by a line of the same character at least as
   long. So a ````markdown block that quotes ```python fences is one block, and backticks inside
   code (`s = "```"`) do not end it. Indentation of the opening fence is removed from the
   content, which handles blocks nested in list items.
4. A final block that is never closed (truncated generation) is a failure
   ("unclosed_code_block"); LiveCodeBench would return the prose between the last two fence
   lines, which fails as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK_SPAN = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Extraction:
    code: str | None
    reason: str | None = None  # None on success


def strip_thinking(text: str) -> str | None:
    """The response without reasoning; None when the reasoning never ended."""
    first_close = text.find("</think>")
    if first_close != -1 and "<think>" not in text[:first_close]:
        text = text[first_close + len("</think>") :]
    text = _THINK_SPAN.sub("", text)
    if "</think>" in text:  # stray closing tag after a closed span: answer follows the last one
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    return text


def fenced_blocks(text: str) -> tuple[list[str], bool]:
    """All fenced blocks in order, and whether the last one was left open."""
    blocks: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None or (m.group("fence")[0] == "`" and "`" in m.group("info")):
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            strip = min(indent, len(line) - len(line.lstrip(" \t")))
            body.append(line[strip:])
            i += 1
        if i == len(lines):
            blocks.append("\n".join(body))
            return blocks, True
        blocks.append("\n".join(body))
        i += 1
    return blocks, False


def extract_code(response: str) -> Extraction:
    text = strip_thinking(response)
    if text is None:
        return Extraction(None, "unfinished_thinking")
    blocks, unclosed = fenced_blocks(text)
    if unclosed:
        return Extraction(None, "unclosed_code_block")
    if not blocks:
        return Extraction(None, "no_code_block")
    code = blocks[-1]
    if not code.strip():
        return Extraction(None, "empty_code_block")
    return Extraction(code if code.endswith("\n") else code + "\n")
