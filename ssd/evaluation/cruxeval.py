"""CruxEval (facebookresearch/cruxeval): 800 short Python functions, each with one input and the
output it gives. Input prediction asks for an input that produces the output, output prediction
for the output of the input; code understanding for the paper's Table 5.

Data: ``data/transfer/cruxeval/cruxeval.jsonl`` (MIT, ``LICENSE`` beside it): ``code`` (defines
``f``), ``input`` (the arguments, Python source: ``"[1, 2], 3"``), ``output`` (a Python literal)
and ``id``. A problem keeps the function as ``code_prefix`` and the pair as its one ``Test``.

* Prompt (``cruxeval_messages``): zero-shot chat. The function and the assertion with ``??`` in
  CruxEval's ``[PYTHON] ... [/PYTHON]`` frame; the model may reason, then gives the completed
  assertion between ``[ANSWER]`` and ``[/ANSWER]`` (the official prompts' convention; they are
  2-shot completions for base models instead).
* Extraction: reasoning removed, the text after the last ``[ANSWER]`` up to ``[/ANSWER]`` (or the
  end: generation may stop at that tag), fence lines dropped; without the tag, the last line
  starting with ``assert``. The answer is parsed as Python: ``assert A == B``, ``A == B`` or one
  expression. Input prediction: ``g`` is ``A`` (or the expression), which must be a call of ``f``
  (officially: must contain ``"f("``). Output prediction: ``g`` is ``B`` (or the expression); an
  answer that calls ``f`` is rejected without running: officially when it contains the text
  ``f(<input>)``, here also for any call of ``f`` that the text check misses (``f( 'a' )``).
* Check: the official program ``code + "\\nassert " + output + " == " + g`` (the dataset's output
  in both modes), run in the sandbox as Python (the answer is untrusted code), passing on exit
  status 0, like the official harness, which runs it in a subprocess for 3 s.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from ssd.evaluation.benchmarks import BuiltProgram, Problem, Test
from ssd.evaluation.extraction import strip_thinking

MODES = ("input", "output")
SYSTEM_PROMPT = "You are an expert Python programmer who reasons precisely about what code does."
OUTPUT_INSTRUCTIONS = (
    "Here is a Python function f and an assertion that calls it on an input. Work out what f "
    "returns for this input; you may reason step by step. Then complete the assertion with the "
    "returned value as a Python literal (no function calls, no unevaluated expressions) and give "
    "the whole assertion between [ANSWER] and [/ANSWER], like this:\n"
    "[ANSWER]\nassert f(...) == <the returned value>\n[/ANSWER]"
)
INPUT_INSTRUCTIONS = (
    "Here is a Python function f and the value it must return. Find an input for which f returns "
    "this value (several may exist: give one); you may reason step by step. Then give the "
    "assertion with your input in place of ?? between [ANSWER] and [/ANSWER], like this:\n"
    "[ANSWER]\nassert f(<your input>) == <the value>\n[/ANSWER]"
)


def load_cruxeval(path: str | Path, mode: str) -> list[Problem]:
    """The 800 items as whole-program Python problems for ``mode`` ("input" or "output")."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: must be one of {', '.join(MODES)}")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        Problem(
            question_id=row["id"], title=row["id"], content=row["code"],
            platform=f"cruxeval_{mode}", contest_date=None, difficulty=None,
            starter_code=_assertion(row["input"], row["output"], mode),
            tests=[Test(row["input"], row["output"], "cruxeval")], func_name="f",
            code_prefix=row["code"], prelude=False, source=f"cruxeval_{mode}",
            program_language="python",
            reference=_program(row["code"], row["output"], _gold(row, mode)))
        for row in rows
    ]


def _gold(row: dict[str, str], mode: str) -> str:
    """The gold prediction's ``g``: the call of the dataset's input, or its output."""
    return f"f({row['input']})" if mode == "input" else row["output"]


def _assertion(call_input: str, output: str, mode: str) -> str:
    return f"assert f(??) == {output}" if mode == "input" else f"assert f({call_input}) == ??"


def _program(code: str, output: str, g: str) -> str:
    return f"{code}\nassert {output} == {g}"


def cruxeval_mode(problem: Problem) -> str:
    return problem.platform.removeprefix("cruxeval_")


def cruxeval_messages(problem: Problem) -> list[dict[str, str]]:
    """The chat conversation for ``problem`` (before the model's chat template)."""
    mode = cruxeval_mode(problem)
    instructions = INPUT_INSTRUCTIONS if mode == "input" else OUTPUT_INSTRUCTIONS
    user = (f"{instructions}\n\n[PYTHON]\n{problem.content.rstrip()}\n{problem.starter_code}\n"
            "[/PYTHON]")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def answer_text(response: str) -> str | None:
    """What the response answers: the last ``[ANSWER]`` span, or its last ``assert`` line."""
    text = strip_thinking(response)
    if text is None:
        return None
    if "[ANSWER]" in text:
        answer = text.rsplit("[ANSWER]", 1)[1].split("[/ANSWER]", 1)[0]
    else:
        asserts = [line for line in text.splitlines() if line.strip().startswith("assert")]
        if not asserts:
            return None
        answer = asserts[-1]
    lines = [line for line in answer.strip().splitlines() if not line.lstrip().startswith("```")]
    return "\n".join(lines).strip() or None


def _sides(answer: str) -> tuple[ast.expr | None, ast.expr] | None:
    """(left, right) of the answer's ``==``, or (None, expression); None: not Python."""
    try:
        body = ast.parse(answer).body
    except SyntaxError:
        return None
    if not body:
        return None
    last = body[-1]
    if isinstance(last, ast.Assert):
        node = last.test
    elif isinstance(last, ast.Expr):
        node = last.value
    else:
        return None
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
        return node.left, node.comparators[0]
    return None, node


def _calls_f(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "f"
               for n in ast.walk(node))


def build_cruxeval_program(problem: Problem, response: str) -> BuiltProgram:
    """The program that checks the prediction in ``response``, or why there is none:
    "no_answer", "unparsable", "not_a_call" (input mode: the answer is not a call of f) or
    "calls_f" (output mode: the answer runs the function instead of predicting)."""
    answer = answer_text(response)
    if answer is None:
        return BuiltProgram(None, "no_answer")
    sides = _sides(answer)
    if sides is None:
        return BuiltProgram(None, "unparsable")
    left, right = sides
    test = problem.tests[0]
    if cruxeval_mode(problem) == "input":
        call = right if left is None else left
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "f"):
            return BuiltProgram(None, "not_a_call")
        g = ast.get_source_segment(answer, call)
    else:
        g = ast.get_source_segment(answer, right)
        if g is not None and (f"f({test.input})" in g or _calls_f(right)):
            return BuiltProgram(None, "calls_f")
    if g is None:
        return BuiltProgram(None, "unparsable")
    return BuiltProgram(_program(problem.code_prefix, test.output, g))


def cruxeval_program(problem: Problem, response: str) -> str | None:
    """The program to run (``Evaluator.check``); None when there is no answer or it is rejected
    (``build_cruxeval_program`` says why)."""
    return build_cruxeval_program(problem, response).program
