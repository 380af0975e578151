"""Throughput of the sandboxed evaluator against a LiveCodeBench-style baseline runner.

The same (problem, program) pairs go through both:

* baseline: what LiveCodeBench's `check_correctness` does, sequentially - per program a
  `multiprocessing.Manager` plus one forked `Process` that runs every test in-process under a
  per-test `signal.alarm`, executing the code with `exec` after the star-import prelude;
* `ssd.evaluation.Evaluator` with the result cache disabled (every program runs), on a pool of
  sandbox slots sized to the machine.

Every verdict must agree (pass/fail); the script exits non-zero otherwise and prints both rates
and "ratio: X.XX". Programs: correct and mutated solutions for the LCB fixtures, plus LeetCode
problems (check scripts converted to LCB functional tests) with their reference solutions and a
mutant of each. Usage: python bench/evaluator_throughput.py [--workers N] [--leetcode N]
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import multiprocessing
import os
import resource
import signal
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ssd.evaluation import (
    Evaluator,
    Problem,
    check_script_to_functional,
    load_check_script_problems,
    load_lcb_jsonl,
    load_lcb_offline,
)
from ssd.sandbox.codec import PRELUDE_SOURCE

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checker tests' mutants, shared from tests/fixtures
from tests.fixtures.mutants import method_mutant  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "lcb"
LEETCODE_FULL = REPO.parent / "shared" / "data" / "prompts" / "leetcode_train.json"


# -- baseline: LiveCodeBench's runner, restated --------------------------------------------------
class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm


def _guard(memory_bytes: int) -> None:
    """The parts of LCB's reliability guard that matter for timing: rlimits, no faulthandler."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _stdio_equal(pred: str, gold: str) -> bool:
    p, g = _lines(pred), _lines(gold)
    if len(p) != len(g):
        return False
    for a, b in zip(p, g, strict=True):
        if a != b and (_decimals(a) is None or _decimals(a) != _decimals(b)):
            return False
    return True


def _run_test(sample: dict[str, Any], code: str, timeout: int) -> list[Any]:
    signal.signal(signal.SIGALRM, _on_alarm)
    _guard(2 << 30)
    io_spec = json.loads(sample["input_output"])
    results: list[Any] = []
    if io_spec.get("fn_name"):
        ns: dict[str, Any] = {"__name__": "tmp_sol"}
        signal.alarm(timeout)
        try:
            exec(PRELUDE_SOURCE + "\n" + code, ns)
            target = ns["Solution"]() if "class Solution" in code else None
            method = getattr(target, io_spec["fn_name"]) if target else ns[io_spec["fn_name"]]
        except BaseException:
            return [-4]
        finally:
            signal.alarm(0)
        for inp, out in zip(io_spec["inputs"], io_spec["outputs"], strict=True):
            args = [json.loads(line) for line in inp.split("\n")]
            signal.alarm(timeout)
            try:
                pred = method(*args)
                if isinstance(pred, tuple):
                    pred = list(pred)
                ok = pred == json.loads(out)
            except _Alarm:
                results.append(-3)
                return results
            except BaseException:
                results.append(-4)
                return results
            finally:
                signal.alarm(0)
            results.append(True if ok else -2)
            if not ok:
                return results
        return results
    compiled = compile(code, "<sol>", "exec")
    for inp, out in zip(io_spec["inputs"], io_spec["outputs"], strict=True):
        ns = {"__name__": "__main__"}
        exec(PRELUDE_SOURCE, ns)
        captured = io.StringIO()
        old_in, old_out = sys.stdin, sys.stdout
        sys.stdin, sys.stdout = io.StringIO(inp), captured
        signal.alarm(timeout)
        try:
            exec(compiled, ns)
            status: Any = True
        except _Alarm:
            status = -3
        except SystemExit as exc:
            status = True if exc.code in (None, 0) else -4
        except BaseException:
            status = -4
        finally:
            signal.alarm(0)
            sys.stdin, sys.stdout = old_in, old_out
        if status is True and not _stdio_equal(captured.getvalue(), out):
            status = -2
        results.append(status)
        if status is not True:
            return results
    return results


def _temp_run(sample: dict[str, Any], code: str, result: Any, timeout: int) -> None:
    result.append(_run_test(sample, code, timeout))


def baseline_check(problem: Problem, code: str, timeout: int = 6) -> bool:
    sample = {
        "input_output": json.dumps(
            {
                "inputs": [t.input for t in problem.tests],
                "outputs": [t.output for t in problem.tests],
                "fn_name": problem.func_name if problem.kind == "functional" else None,
            }
        )
    }
    manager = multiprocessing.Manager()
    try:
        result = manager.list()
        proc = multiprocessing.Process(target=_temp_run, args=(sample, code, result, timeout))
        proc.start()
        proc.join(timeout=(timeout + 1) * len(problem.tests) + 5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        outcome = list(result[0]) if result else [-1]
    finally:
        manager.shutdown()
    return len(outcome) == len(problem.tests) and all(r is True for r in outcome)


# -- workload ------------------------------------------------------------------------------------
def workload(leetcode: int) -> list[tuple[Problem, str]]:
    solutions = json.loads((FIXTURES / "solutions.json").read_text())
    pairs: list[tuple[Problem, str]] = []
    for p in load_lcb_jsonl(FIXTURES / "official_sample.jsonl"):
        s = solutions["official"][p.question_id]
        pairs += [(p, s["correct"]), (p, s["mutant"])]
    offline = load_lcb_offline(FIXTURES / "lcb_2408_2501_slice.json")
    for p, s in zip(offline, solutions["lcb_2408_2501_slice"], strict=True):
        pairs += [(p, s["correct"]), (p, s["mutant"])]
    source = LEETCODE_FULL if LEETCODE_FULL.exists() else FIXTURES / "leetcode_train_slice.json"
    count = 0
    for p in load_check_script_problems(source):
        f = check_script_to_functional(p)
        if f is None or f.reference is None or "sortedcontainers" in f.reference:
            continue
        pairs += [(f, f.reference), (f, method_mutant(f.reference, f.func_name))]
        count += 1
        if count == leetcode:
            break
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--leetcode", type=int, default=32, help="LeetCode problems to add")
    args = parser.parse_args()
    pairs = workload(args.leetcode)
    print(f"programs: {len(pairs)} (distinct: {len({(p.fingerprint, c) for p, c in pairs})})")

    start = time.perf_counter()
    base = [baseline_check(p, c) for p, c in pairs]
    base_s = time.perf_counter() - start

    started = time.perf_counter()
    with Evaluator(workers=args.workers, cache=False) as ev:
        startup_s = time.perf_counter() - started
        start = time.perf_counter()
        verdicts = ev.check_many(pairs)
        ours_s = time.perf_counter() - start
        workers, info = ev.workers, ev.info
    ours = [v.passed for v in verdicts]

    disagree = [
        (p.question_id, b, v) for (p, _), b, v in zip(pairs, base, verdicts, strict=True)
        if b != v.passed
    ]  # fmt: skip
    base_rate, our_rate = len(pairs) / base_s, len(pairs) / ours_s
    print(f"passed: baseline {sum(base)}, evaluator {sum(ours)} of {len(pairs)}")
    print(f"baseline (LCB-style, sequential): {base_rate:.1f} programs/s ({base_s:.2f} s)")
    print(
        f"evaluator ({workers} workers, sandboxed, cache off): {our_rate:.1f} programs/s "
        f"({ours_s:.2f} s; start-up {startup_s:.2f} s not counted)"
    )
    print(
        f"sandbox: uid_isolated={info.uid_isolated} network_isolated={info.network_isolated} "
        f"private_tmp={info.private_tmp}"
    )
    print(f"verdicts agree: {not disagree}")
    for row in disagree:
        print("  DISAGREE", row)
    print(f"ratio: {our_rate / base_rate:.2f}")
    return 1 if disagree else 0


if __name__ == "__main__":
    with contextlib.suppress(RuntimeError):
        multiprocessing.set_start_method("fork")  # LiveCodeBench's default on Linux
    sys.exit(main())
