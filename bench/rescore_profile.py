"""Rescoring existing results under another grader profile: no model, and what it costs.

One run of evaluate.py scores 1,000 completions (eval.completions=, grader default) on the
official-format LiveCodeBench fixture; its results.jsonl then goes back in, as it is, as
eval.completions for the lcb and ml_ssd profiles. The script checks that no engine started and
prints each profile's wall time as a ratio against the default scoring measured in the same run
("ratio lcb/default: X.XX"), and how many verdicts each profile changed. Every completion is a
distinct program (a numbered comment), so the evaluator's cache serves none of them.
Usage: python bench/rescore_profile.py [--samples 1000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ssd import sampling
from ssd.evaluation import run_evaluation
from ssd.evaluation.graders import PROFILES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.conftest import compose  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "lcb"
# What each of a problem's samples is, in turn: mostly right, some wrong, some unusable.
KINDS = ["correct", "correct", "mutant", "correct", "python3", "mutant", "prose", "correct"]


def completions(path: Path, samples: int) -> None:
    solutions = json.loads((FIXTURES / "solutions.json").read_text())["official"]
    ids = sorted(solutions)
    lines = []
    for index in range(samples):
        qid = ids[index % len(ids)]
        kind = KINDS[(index // len(ids)) % len(KINDS)]
        program = solutions[qid]["mutant" if kind == "mutant" else "correct"]
        tag = "python3" if kind == "python3" else "python"
        text = ("I would add the numbers." if kind == "prose" else
                f"Solution:\n\n```{tag}\n# sample {index}\n{program}```\n")
        lines.append({"question_id": qid, "sample_index": index // len(ids), "completion": text})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def score(source: Path, grader: str, out: Path, workers: int | None) -> tuple[float, Path]:
    cfg = compose("evaluate", [
        "eval=lcb_v6", f"eval.path={FIXTURES / 'official_sample.jsonl'}", "eval.problem_set=null",
        f"eval.completions={source}", "eval.ks=[1]", f"eval.grader={grader}",
        f"eval.workers={workers or 'null'}", "logger=none", "progress=false",
        f"output_dir={out}"])
    started = time.perf_counter()
    run_dir = run_evaluation(cfg)
    return time.perf_counter() - started, run_dir


def verdicts(run_dir: Path) -> dict[tuple[str, int], bool]:
    records = (json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines())
    return {(r["question_id"], r["sample_index"]): r["passed"] for r in records}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "completions.jsonl"
        completions(source, args.samples)
        starts = sampling.engine_starts
        seconds, default_run = score(source, "default", root / "default", args.workers)
        base = verdicts(default_run)
        print(f"default: {len(base)} samples in {seconds:.1f} s "
              f"({sum(base.values())} passed)")
        existing = default_run / "results.jsonl"  # rescored as it is: it holds the completions
        for grader in (name for name in PROFILES if name != "default"):
            took, run_dir = score(existing, grader, root / grader, args.workers)
            got = verdicts(run_dir)
            changed = sum(got[key] != base[key] for key in base)
            print(f"{grader}: {len(got)} samples in {took:.1f} s ({sum(got.values())} passed, "
                  f"{changed} verdicts differ from default); ratio {grader}/default: "
                  f"{took / seconds:.2f}")
        assert sampling.engine_starts == starts, "an engine started"
        print("engines started: 0 (no model time)")


if __name__ == "__main__":
    main()
