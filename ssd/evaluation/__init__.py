"""The evaluate stage: code extraction, sandboxed checks with LiveCodeBench semantics, pass@k.

Public entry (what drivers use): ``run_evaluation``, ``check_eval``, ``evaluation_plan``; the
benchmark loaders and the evaluator for library use.
"""

from ssd.evaluation.benchmarks import (
    Problem,
    Test,
    check_script_to_functional,
    load_check_script_problems,
    load_humaneval,
    load_lcb_hub,
    load_lcb_jsonl,
    load_lcb_offline,
)
from ssd.evaluation.checking import Verdict
from ssd.evaluation.evaluator import Evaluator
from ssd.evaluation.extraction import Extraction, extract_code
from ssd.evaluation.problem_sets import (
    PROBLEM_SETS,
    ProblemSet,
    named_set_ids,
    named_set_size,
)
from ssd.evaluation.run import check_eval, evaluation_plan, run_evaluation
from ssd.evaluation.statements import eval_set_problems

__all__ = [
    "PROBLEM_SETS",
    "Evaluator",
    "Extraction",
    "Problem",
    "ProblemSet",
    "Test",
    "Verdict",
    "check_eval",
    "check_script_to_functional",
    "eval_set_problems",
    "evaluation_plan",
    "extract_code",
    "load_check_script_problems",
    "load_humaneval",
    "load_lcb_hub",
    "load_lcb_jsonl",
    "load_lcb_offline",
    "named_set_ids",
    "named_set_size",
    "run_evaluation",
]
