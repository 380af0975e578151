"""Evaluation: code extraction, sandboxed execution with LiveCodeBench semantics, pass@k."""

from ssd.evaluation.benchmarks import (
    WINDOWS,
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
from ssd.evaluation.passk import ProblemResult, pass_at_k, summarize
from ssd.evaluation.sandbox import Limits, SandboxInfo

__all__ = [
    "WINDOWS",
    "Evaluator",
    "Extraction",
    "Limits",
    "Problem",
    "ProblemResult",
    "SandboxInfo",
    "Test",
    "Verdict",
    "check_script_to_functional",
    "extract_code",
    "load_check_script_problems",
    "load_humaneval",
    "load_lcb_hub",
    "load_lcb_jsonl",
    "load_lcb_offline",
    "pass_at_k",
    "summarize",
]
