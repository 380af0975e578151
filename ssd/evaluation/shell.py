"""HumanEval-Shell: MultiPL-E's translation of HumanEval into bash (158 problems), out-of-domain
code for the paper's Table 5.

Data: ``data/transfer/humaneval_sh/humaneval-sh.jsonl`` (MultiPL-E's ``humaneval-sh``, as
deepseek-ai/DeepSeek-Coder ships it). MultiPL-E's licence (``LICENSE-MultiPL-E`` beside it) is
BSD-3 with one more clause: **its contents may not be used as training data for any machine
learning model**. Evaluate on it; never put it in a prompt pool or a training set.

Each problem's ``prompt`` is a bash script that opens the function (comments, then
``name() {``); its ``tests`` begin with the ``}`` that closes it, define ``candidate`` and check
each case with ``[[ $(candidate args) = "expected" ]]`` under ``set -e``.

* Prompt (``humaneval_sh_messages``): a system message asking for the complete function in one
  ```` ```bash ```` block, and the problem's prompt as a bash block in the user turn.
* Program (``humaneval_sh_program``): the answer is the last fenced block after reasoning
  (``extraction.extract_code``). When the block defines the function itself (its header
  re-stated), the program is the block followed by the tests without their opening ``}``: the
  answer's definitions, helpers included, replace the prompt's open function. Otherwise the block
  continues the function's body: cut at its first line that starts with ``}`` (the closing brace a
  chat model repeats; MultiPL-E's stop sequence ``"\\n}"`` for base models), and the program is
  MultiPL-E's ``prompt + completion + "\\n" + tests``. A body without any command gets ``:``, bash's
  no-op, since bash rejects an empty function body: an empty answer then fails by the tests'
  checks, as in other languages, not by a syntax error.
* Check: the program runs under bash in the sandbox (``Problem.program_language == "bash"``) and
  passes on exit status 0, as MultiPL-E's ``eval_sh``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ssd.evaluation.benchmarks import BuiltProgram, Problem
from ssd.evaluation.extraction import extract_code

SYSTEM_PROMPT = (
    "You are an expert Bash programmer. Complete the Bash function below so that it does what "
    "its comments say; the comments also say how the arguments arrive and how the result is "
    "printed. Write the complete function, header included, with any helper functions it "
    "needs, in a single markdown code block (```bash ... ```)."
)
_HEADER = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\(\s*\)\s*\{\s*$")
_CLOSING_LINE = re.compile(r"^}", re.MULTILINE)
_COMMAND = re.compile(r"^[ \t]*[^\s#]", re.MULTILINE)


def function_name(prompt: str) -> str:
    """The function a prompt opens (its last line, ``name() {``)."""
    match = _HEADER.match(prompt.rstrip().splitlines()[-1])
    if match is None:
        raise ValueError(f"prompt does not end with a function header: {prompt[-80:]!r}")
    return match.group("name")


def load_humaneval_sh(path: str | Path) -> list[Problem]:
    """MultiPL-E's humaneval-sh rows as whole-program bash problems.

    Not for training: MultiPL-E's licence forbids using its contents as training data for any
    machine learning model (see the module docstring)."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    problems = []
    for row in rows:
        name = function_name(row["prompt"])
        if not row["tests"].startswith("}"):
            raise ValueError(f"{row['name']}: tests do not begin by closing the function")
        problems.append(Problem(
            question_id=row["name"], title=name, content=row["prompt"], platform="humaneval_sh",
            contest_date=None, difficulty=None, starter_code=row["prompt"], tests=[],
            func_name=name, check_script=row["tests"], entry_point=name,
            code_prefix=row["prompt"], prelude=False, source="humaneval_sh",
            program_language="bash"))
    return problems


def humaneval_sh_messages(problem: Problem) -> list[dict[str, str]]:
    """The chat conversation for ``problem`` (before the model's chat template)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"```bash\n{problem.content.rstrip()}\n```"}]


def defines_function(code: str, name: str) -> bool:
    """Whether ``code`` re-states the function's header (``name()`` or ``function name``)."""
    escaped = re.escape(name)
    header = rf"^[ \t]*(?:function[ \t]+{escaped}\b|{escaped}[ \t]*\([ \t]*\))"
    return re.search(header, code, re.MULTILINE) is not None


def function_body(completion: str) -> str:
    """A continuation of the function's body, up to its first line starting with ``}``; a body
    without any command gets ``:`` (bash rejects an empty one)."""
    closing = _CLOSING_LINE.search(completion)
    body = completion if closing is None else completion[: closing.start()]
    return body if _COMMAND.search(body) else ":\n" + body


def build_humaneval_sh_program(problem: Problem, response: str) -> BuiltProgram:
    """The bash program that checks ``response``, or why there is none."""
    extracted = extract_code(response)
    if extracted.code is None:
        return BuiltProgram(None, extracted.reason)
    tests = str(problem.check_script)
    if defines_function(extracted.code, str(problem.entry_point)):
        return BuiltProgram(extracted.code + "\n" + tests[1:])
    return BuiltProgram(problem.code_prefix + function_body(extracted.code) + "\n" + tests)


def humaneval_sh_program(problem: Problem, response: str) -> str | None:
    """The program to run (``Evaluator.check``); None when the response holds no code."""
    return build_humaneval_sh_program(problem, response).program
