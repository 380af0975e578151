"""HumanEval-Shell (ssd/evaluation/shell.py): loading, the prompt, both answer forms, and the
oracles in the sandbox: hand-written correct bash solutions pass, wrong ones fail, and every one
of the 158 test scripts runs to a failed check (never a bash error) on an empty body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ssd.evaluation import Evaluator, Problem
from ssd.evaluation.shell import (
    build_humaneval_sh_program,
    defines_function,
    function_body,
    function_name,
    humaneval_sh_messages,
    humaneval_sh_program,
    load_humaneval_sh,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "transfer" / "humaneval_sh"

# Correct solutions written for this test (MultiPL-E ships none), one per problem, as whole
# functions; the continuation form of each is its body and closing brace.
SOLUTIONS = {
    "HumanEval_23_strlen": 'strlen() {\n    echo "${#1}"\n}\n',
    "HumanEval_53_add": "add() {\n    echo $(( $1 + $2 ))\n}\n",
    "HumanEval_27_flip_case": (
        "flip_case() {\n    printf '%s\\n' \"$1\" | tr 'a-zA-Z' 'A-Za-z'\n}\n"),
    "HumanEval_35_max_element": (
        'max_element() {\n    local max=""\n    for x in $1; do\n'
        '        if [[ -z $max ]] || (( x > max )); then max=$x; fi\n    done\n'
        '    echo "$max"\n}\n'),
    "HumanEval_13_greatest_common_divisor": (
        "greatest_common_divisor() {\n    local a=$1 b=$2 t\n"
        "    while (( b != 0 )); do t=$b; b=$(( a % b )); a=$t; done\n    echo \"$a\"\n}\n"),
    "HumanEval_55_fib": (
        "fib() {\n    local a=0 b=1 t i\n"
        "    for (( i = 0; i < $1; i++ )); do t=$(( a + b )); a=$b; b=$t; done\n"
        "    echo \"$a\"\n}\n"),
    "HumanEval_60_sum_to_n": "sum_to_n() {\n    echo $(( $1 * ($1 + 1) / 2 ))\n}\n",
    "HumanEval_48_is_palindrome": (
        'is_palindrome() {\n    local s=$1 r="" i\n'
        "    for (( i = ${#s} - 1; i >= 0; i-- )); do r+=${s:i:1}; done\n"
        '    if [[ $s == "$r" ]]; then echo true; else echo false; fi\n}\n'),
    "HumanEval_31_is_prime": (
        "function is_prime {\n    local n=$1 i\n"
        "    if (( n < 2 )); then echo false; return; fi\n"
        "    for (( i = 2; i * i <= n; i++ )); do\n"
        "        if (( n % i == 0 )); then echo false; return; fi\n    done\n"
        "    echo true\n}\n"),
    "HumanEval_34_unique": "unique() {\n    echo $(printf '%s\\n' $1 | sort -n -u)\n}\n",
    "HumanEval_30_get_positive": (
        "get_positive() {\n    local out=() x\n"
        "    for x in $1; do if (( x > 0 )); then out+=(\"$x\"); fi; done\n"
        '    echo "${out[*]}"\n}\n'),
    "HumanEval_42_incr_list": (
        "incr_list() {\n    local out=() x\n    for x in $1; do out+=($(( x + 1 ))); done\n"
        '    echo "${out[*]}"\n}\n'),
    "HumanEval_28_concatenate": 'concatenate() {\n    echo "${1// /}"\n}\n',
    "HumanEval_16_count_distinct_characters": (
        "count_distinct_characters() {\n"
        "    printf '%s' \"$1\" | tr 'A-Z' 'a-z' | fold -w1 | sort -u | wc -l\n}\n"),
    "HumanEval_24_largest_divisor": (
        "largest_divisor() {\n    local i\n    for (( i = $1 - 1; i >= 1; i-- )); do\n"
        "        if (( $1 % i == 0 )); then echo \"$i\"; return; fi\n    done\n}\n"),
    "HumanEval_52_below_threshold": (
        "below_threshold() {\n    local x\n"
        "    for x in $1; do if (( x >= $2 )); then echo false; return; fi; done\n"
        "    echo true\n}\n"),
    "HumanEval_15_string_sequence": "string_sequence() {\n    seq -s ' ' 0 \"$1\"\n}\n",
    "HumanEval_3_below_zero": (
        "below_zero() {\n    local balance=0 x\n    for x in $1; do\n"
        "        balance=$(( balance + x ))\n"
        "        if (( balance < 0 )); then echo true; return; fi\n    done\n    echo false\n}\n"),
    "HumanEval_49_modp": (
        "modp() {\n    local r=1 i\n"
        "    for (( i = 0; i < $1; i++ )); do r=$(( r * 2 % $2 )); done\n"
        '    echo "$r"\n}\n'),
    "HumanEval_51_remove_vowels": (
        "remove_vowels() {\n    printf '%s' \"$1\" | tr -d 'aeiouAEIOU'\n}\n"),
}


def fenced(code: str) -> str:
    return f"Here is the function:\n\n```bash\n{code}```\n"


def continuation(solution: str) -> str:
    """The solution's body and closing brace: what a model continuing the prompt writes."""
    return solution.split("\n", 1)[1]


@pytest.fixture(scope="module")
def problems() -> dict[str, Problem]:
    return {p.question_id: p for p in load_humaneval_sh(DATA / "humaneval-sh.jsonl")}


@pytest.fixture(scope="module")
def ev() -> Iterator[Evaluator]:
    # MultiPL-E's limit is 10-15 s per program; these need far less.
    with Evaluator(workers=2, time_limit_s=10.0, max_processes=32) as evaluator:
        yield evaluator


# -- loading, prompt, programs (pure) -------------------------------------------------------------
def test_the_set_and_its_licence(problems: dict[str, Problem]) -> None:
    assert len(problems) == 158
    assert not {"HumanEval_7", "HumanEval_29"} & {q.rsplit("_", 1)[0] for q in problems}
    strlen = problems["HumanEval_23_strlen"]
    assert (strlen.kind, strlen.program_language, strlen.entry_point) == ("program", "bash",
                                                                          "strlen")
    assert "may not be used as training data" in (DATA / "LICENSE-MultiPL-E").read_text()


def test_messages_show_the_prompt_in_a_bash_block(problems: dict[str, Problem]) -> None:
    system, user = humaneval_sh_messages(problems["HumanEval_23_strlen"])
    assert "```bash" in system["content"] and "header included" in system["content"]
    assert user["content"].startswith("```bash\n#!/bin/bash\n")
    assert user["content"].endswith("strlen() {\n```")


def test_function_names() -> None:
    assert function_name("#!/bin/bash\n# doc\nis_prime() {\n") == "is_prime"
    with pytest.raises(ValueError, match="function header"):
        function_name("# no function here\n")
    for header in ("f() {", "f () {", "function f {", "function f() {", "  f()"):
        assert defines_function(f"# helper\n{header}\n  echo 1\n}}\n", "f"), header
    assert not defines_function("g() {\n  f 1\n}\n", "f")
    assert not defines_function("echo $(f 1)\n", "f")


def test_function_body() -> None:
    assert function_body("    echo 1\n}\n") == "    echo 1\n"
    assert function_body("    echo 1\n") == "    echo 1\n"
    assert function_body("  g() {\n    echo 1\n  }\n  g\n}\nf 2\n") == (
        "  g() {\n    echo 1\n  }\n  g\n")  # an indented brace does not close the function
    assert function_body("}\n") == ":\n"
    assert function_body("  # nothing yet\n}\n") == ":\n  # nothing yet\n"


def test_both_answer_forms_build_the_same_check(problems: dict[str, Problem]) -> None:
    strlen = problems["HumanEval_23_strlen"]
    solution = SOLUTIONS["HumanEval_23_strlen"]
    whole = humaneval_sh_program(strlen, fenced(solution))
    assert whole == solution + "\n" + str(strlen.check_script)[1:]
    assert whole is not None and whole.count("strlen() {") == 1
    body = humaneval_sh_program(strlen, fenced(continuation(solution)))
    assert body == strlen.code_prefix + '    echo "${#1}"\n' + "\n" + str(strlen.check_script)
    assert build_humaneval_sh_program(strlen, "echo ${#1}").reason == "no_code_block"
    assert build_humaneval_sh_program(strlen, "```bash\necho 1\n").reason == (
        "unclosed_code_block")
    thinking = "<think>\n```bash\nstrlen() { echo 0; }\n```\n</think>\n" + fenced(solution)
    assert humaneval_sh_program(strlen, thinking) == whole


# -- oracles in the sandbox -----------------------------------------------------------------------
def test_hand_written_solutions_pass_in_both_forms(ev: Evaluator,
                                                   problems: dict[str, Problem]) -> None:
    assert len(SOLUTIONS) >= 15
    pairs = [(problems[name], humaneval_sh_program(problems[name], fenced(form)))
             for name, solution in SOLUTIONS.items()
             for form in (solution, continuation(solution))]
    verdicts = ev.check_many(pairs)
    failed = {p.question_id: v for (p, _), v in zip(pairs, verdicts, strict=True) if not v.passed}
    assert failed == {}


def test_wrong_answers_fail(ev: Evaluator, problems: dict[str, Problem]) -> None:
    names = list(SOLUTIONS)
    others = names[1:] + names[:1]  # each problem gets the next one's solution
    pairs = []
    for name, other in zip(names, others, strict=True):
        problem = problems[name]
        for answer in ("}\n", "    echo 0\n}\n", continuation(SOLUTIONS[other]),
                       SOLUTIONS[other]):
            pairs.append((problem, humaneval_sh_program(problem, fenced(answer))))
    verdicts = ev.check_many(pairs)
    assert not any(v.passed for v in verdicts)
    # An empty body and `echo 0` run and fail a check; another problem's whole function leaves
    # ours open: bash's syntax error.
    reasons = [v.reason for v in verdicts]
    assert set(reasons[0::4] + reasons[1::4]) == {"wrong_answer"}
    assert set(reasons[3::4]) == {"compile_error"}


def test_every_test_script_runs_on_an_empty_body(ev: Evaluator,
                                                 problems: dict[str, Problem]) -> None:
    """An empty body fails each problem by a failed check: bash exits with 1 and says nothing
    (MultiPL-E's `[[ ... ]]` under `set -e`), never with a syntax or command error."""
    pairs = [(p, humaneval_sh_program(p, fenced("}\n"))) for p in problems.values()]
    verdicts = ev.check_many(pairs)
    odd = {p.question_id: v for (p, _), v in zip(pairs, verdicts, strict=True)
           if (v.reason, v.detail) != ("wrong_answer", "exit status 1")}
    assert odd == {}
