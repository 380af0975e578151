"""Code extraction from model responses: last fenced block, thinking removed first."""

from __future__ import annotations

import pytest

from ssd.evaluation.extraction import extract_code, fenced_blocks, strip_thinking


def test_last_block_wins_over_first() -> None:
    text = "Draft:\n```python\nprint(1)\n```\nFixed version:\n```python\nprint(2)\n```\nDone."
    assert extract_code(text).code == "print(2)\n"


def test_last_block_is_taken_whatever_its_language() -> None:
    # LiveCodeBench's rule: the last block, even when it is not Python.
    text = "```python\nprint(1)\n```\nRun it with:\n```bash\npython sol.py\n```"
    assert extract_code(text).code == "python sol.py\n"


@pytest.mark.parametrize("tag", ["", "python", "py", "Python3", " python ", "python title='x'"])
def test_language_tags(tag: str) -> None:
    assert extract_code(f"```{tag}\nx = 1\n```").code == "x = 1\n"


def test_code_sketched_while_thinking_is_ignored() -> None:
    text = (
        "<think>\nTry:\n```python\nprint('wrong')\n```\n</think>\n"
        "Answer:\n```python\nprint('ok')\n```"
    )
    assert extract_code(text).code == "print('ok')\n"


def test_think_block_code_only_means_no_answer() -> None:
    text = "<think>```python\nprint('wrong')\n```</think>\nI could not solve it."
    assert extract_code(text).reason == "no_code_block"


def test_lone_closing_think_tag() -> None:
    # Templates that open <think> in the prompt: everything before </think> is reasoning.
    text = "reasoning\n```python\nprint(0)\n```\n</think>\n```python\nprint(1)\n```"
    assert extract_code(text).code == "print(1)\n"


def test_unfinished_thinking() -> None:
    text = "<think>\nlet me write\n```python\nprint(1)\n```\nhmm"
    assert extract_code(text).reason == "unfinished_thinking"
    assert strip_thinking("a<think>b</think>c<think>d") is None


def test_several_think_spans() -> None:
    assert strip_thinking("<think>a</think>b<think>c</think>d") == "bd"


def test_nested_backticks() -> None:
    text = "````markdown\n```python\nprint(1)\n```\n````"
    assert extract_code(text).code == "```python\nprint(1)\n```\n"


def test_backticks_inside_code_do_not_close_the_block() -> None:
    text = '```python\ns = "```"\nprint(s)  # ``` inline\n```'
    assert extract_code(text).code == 's = "```"\nprint(s)  # ``` inline\n'


def test_tilde_fences() -> None:
    assert extract_code("~~~python\nprint(1)\n~~~").code == "print(1)\n"
    assert extract_code("~~~\n```\nx\n```\n~~~").code == "```\nx\n```\n"


def test_indented_fence_in_a_list_item() -> None:
    text = "1. Solution:\n   ```python\n   def f():\n       return 1\n   ```\n"
    assert extract_code(text).code == "def f():\n    return 1\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no code here", "no_code_block"),
        ("```python\nprint(1)\n", "unclosed_code_block"),
        ("```python\nprint(1)\n```\nmore:\n```python\nprint(", "unclosed_code_block"),
        ("```python\n\n```", "empty_code_block"),
        ("inline ```print(1)``` only", "no_code_block"),
    ],
)
def test_failures(text: str, reason: str) -> None:
    result = extract_code(text)
    assert (result.code, result.reason) == (None, reason)


def test_fenced_blocks_reports_open_block() -> None:
    assert fenced_blocks("```\na\n```\n```\nb") == (["a", "b"], True)
