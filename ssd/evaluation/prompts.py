"""Evaluation prompts: one chat conversation per benchmark problem.

The paper (Section C.1) queries every model single-turn with its own chat template: a system
message asking for a Python solution in one markdown code block, the problem as the user turn,
and no chain-of-thought instruction (a thinking model's template opens its reasoning itself).
The system message depends on how a problem is graded:

* ``stdin``: the program reads standard input and writes standard output. This is exactly the
  conversation generate.py samples the training set with (``chat_messages``), so an SSD model
  is evaluated under the task presentation it was distilled with.
* ``starter``: LeetCode-style problems graded by calling a method; the starter code (a
  ``class Solution`` stub) is shown and must be completed, signature unchanged.
* ``function``: HumanEval; the prompt is a function stub with its docstring, to be completed. The
  checker prepends the stub to the answer, so a complete function (signature included) is
  asked for: it simply redefines the stub, and any helpers the stub's module defines stay in scope.

The answer is taken from the response by ``extraction.extract_code`` (the last fenced block after
reasoning is removed), so every variant asks for a single code block.
"""

from __future__ import annotations

from ssd.data.prompts import chat_messages
from ssd.evaluation.benchmarks import Problem
from ssd.evaluation.lab import PLATFORM as LAB_PLATFORM
from ssd.evaluation.lab import lab_messages

# Part of every evaluation run's identity: changing any wording below must start new runs.
PROMPT_VERSION = 1

STARTER_SYSTEM_PROMPT = (
    "You are an expert competitive programmer. Solve the problem below in Python 3 by "
    "completing the given starter code: keep the class Solution and the method signature as "
    "they are, and do not read input or print output (the method is called and its return "
    "value is checked). "
    "Put your complete solution in a single markdown code block (```python ... ```)."
)
FUNCTION_SYSTEM_PROMPT = (
    "You are an expert Python programmer. Complete the Python function below so that it does "
    "what its docstring says. Write the complete function, signature included, with any imports "
    "it needs, in a single markdown code block (```python ... ```)."
)


def prompt_style(problem: Problem) -> str:
    """'function' (HumanEval), 'starter' (graded by calling code) or 'stdin'."""
    if problem.platform == "humaneval":
        return "function"
    if problem.kind in ("functional", "check") or problem.starter_code.strip():
        return "starter"
    return "stdin"


def _code_block(code: str) -> str:
    # Starter stubs end mid-body (trailing indentation); a clean block reads better.
    return f"```python\n{code.rstrip()}\n```"


def eval_messages(problem: Problem) -> list[dict[str, str]]:
    """The chat messages for ``problem`` (before the model's chat template)."""
    if problem.platform == LAB_PLATFORM:
        return lab_messages(problem)
    style = prompt_style(problem)
    if style == "function":
        return [
            {"role": "system", "content": FUNCTION_SYSTEM_PROMPT},
            {"role": "user", "content": _code_block(problem.starter_code or problem.content)},
        ]
    if style == "starter":
        user = problem.content.strip()
        # LeetCode check-script statements already quote their starter code.
        if problem.starter_code.strip() and problem.starter_code.strip() not in user:
            user += "\n\nStarter code:\n" + _code_block(problem.starter_code)
        return [
            {"role": "system", "content": STARTER_SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
    return chat_messages(problem.content)
