"""The evaluator: parallel, cached correctness checks of programs against problems.

    with Evaluator(workers=8) as ev:
        verdicts = ev.check_many([(problem, code), ...])

Each program runs once in a fresh sandboxed child (see `sandbox.py`); all tests of a problem run
in that one child, in order, stopping at the first failure. Identical (problem tests, code, limits)
triples are executed once per evaluator and then served from a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ssd.evaluation.benchmarks import Problem, Test
from ssd.evaluation.checking import (
    Clock,
    Verdict,
    program_verdict,
    run_call_tests,
    run_check_script,
    run_stdin_tests,
)
from ssd.evaluation.graders import PROFILES, GraderProfile
from ssd.sandbox import Limits, Sandbox, SandboxError, SandboxFailure, SandboxInfo


class Evaluator:
    def __init__(
        self,
        workers: int | None = None,
        time_limit_s: float = 6.0,
        problem_budget_s: float | None = None,
        memory_mb: int = 2048,
        max_output_bytes: int = 16 << 20,
        max_processes: int = 8,
        cache: bool = True,
        interpreter: str | None = None,
        uid_base: int = 62000,
        namespaces: bool = True,
        profile: GraderProfile = PROFILES["default"],
    ) -> None:
        """
        workers: parallel sandbox slots (default: the CPUs this process may use).
        time_limit_s: wall-clock limit per test (per call for check scripts), as LCB's 6 s.
        problem_budget_s: wall-clock limit for all tests of one program; None uses
            LiveCodeBench's per-problem allowance, (time_limit_s + 1) * n_tests + 5.
        memory_mb: RLIMIT_AS per process. max_output_bytes: stdout per test.
        max_processes: RLIMIT_NPROC (processes + threads) for the program's uid.
        cache: reuse verdicts of identical (problem tests, code, limits).
        interpreter: Python running the programs (default: this one, `sys.executable`).
        uid_base: first uid of the sandbox uid pool (used when running as root).
        namespaces: use mount/network/IPC namespaces where the platform allows.
        profile: whose verdict semantics (graders.py): extraction, which tests, time limits,
            call-based rules, the program's prelude and input/output emulation.
        """
        self.workers = workers or len(os.sched_getaffinity(0))
        self.limits = Limits(
            time_limit_s=time_limit_s,
            memory_mb=memory_mb,
            max_output_bytes=max_output_bytes,
            max_processes=max_processes,
        )
        self.problem_budget_s = problem_budget_s
        self.profile = profile
        self.use_cache = cache
        self._cache: dict[str, Verdict] = {}
        self._cache_lock = threading.Lock()
        self.sandbox = Sandbox(self.workers, interpreter, uid_base, namespaces=namespaces,
                               preload=profile.preload)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ssd-eval")

    @property
    def info(self) -> SandboxInfo:
        return self.sandbox.info

    def tests(self, problem: Problem) -> list[Test]:
        """The tests the profile runs (ml_ssd: the private ones alone)."""
        if self.profile.private_tests_only and problem.kind != "check":
            return problem.private_tests
        return problem.tests

    def budget_s(self, problem: Problem) -> float:
        if self.problem_budget_s is not None:
            return self.problem_budget_s
        if problem.kind == "program":  # one run: the time limit binds the whole program
            return self.limits.time_limit_s
        return (self.limits.time_limit_s + 1) * max(1, len(self.tests(problem))) + 5

    def cache_key(self, problem: Problem, code: str) -> str:
        payload = json.dumps([problem.fingerprint, code, repr(self.limits), self.budget_s(problem),
                              self.profile.name])
        return hashlib.sha256(payload.encode()).hexdigest()

    # -- public API ---------------------------------------------------------------------------
    def check(self, problem: Problem, code: str | None) -> Verdict:
        return self.check_many([(problem, code)])[0]

    def check_response(self, problem: Problem, response: str) -> Verdict:
        """Extract the program from a model response (the profile's rule), then check it."""
        if problem.kind == "program":
            raise ValueError(f"problem {problem.question_id} is a whole program: build it from "
                             "the response (its benchmark's module), then call check")
        extracted = self.profile.extract(response)
        if extracted.code is None:
            return Verdict(False, "no_code", extracted.reason or "", 0, len(problem.tests))
        return self.check(problem, extracted.code)

    def check_many(self, pairs: Sequence[tuple[Problem, str | None]]) -> list[Verdict]:
        """Verdicts in input order; programs run in parallel on the worker pool.

        Raises ValueError for a problem without tests (it would pass vacuously); check-script
        and whole-program problems hold their checks in their code."""
        results: list[Verdict | None] = [None] * len(pairs)
        pending: dict[str, list[int]] = {}
        jobs: list[tuple[str, Problem, str]] = []
        for i, (problem, code) in enumerate(pairs):
            if problem.kind not in ("check", "program") and not problem.tests:
                raise ValueError(f"problem {problem.question_id} has no tests")
            if code is None or not code.strip():
                results[i] = Verdict(False, "no_code", "empty program", 0, len(problem.tests))
                continue
            key = self.cache_key(problem, code) if self.use_cache else str(i)
            with self._cache_lock:
                cached = self._cache.get(key)
            if cached is not None:
                results[i] = cached
            elif key in pending:
                pending[key].append(i)
            else:
                pending[key] = [i]
                jobs.append((key, problem, code))
        futures = [
            (key, self._pool.submit(self._run, problem, code)) for key, problem, code in jobs
        ]
        for key, future in futures:
            verdict = future.result()
            if self.use_cache:
                with self._cache_lock:
                    self._cache[key] = verdict
            for i in pending[key]:
                results[i] = verdict
        return [v for v in results if v is not None]

    # -- one program ----------------------------------------------------------------------------
    def _job(self, problem: Problem, code: str) -> dict[str, Any]:
        job: dict[str, Any] = {
            "max_output": self.limits.max_output_bytes,
            "prelude": problem.prelude,
        }
        if problem.kind == "check":
            job.update(kind="call", code=problem.code_prefix + code, entry=problem.entry_point)
            job["entry_mode"] = "expr"
        elif problem.kind == "functional":
            job.update(kind="call", code=code, entry=problem.func_name, entry_mode="method")
        else:
            job.update(kind="stdin", code=code, entry=None, entry_mode="expr")
        if problem.kind != "check":
            job.update(self.profile.job_settings())
        return job

    def _run(self, problem: Problem, code: str) -> Verdict:
        for attempt in range(2):  # one retry if the sandbox itself broke
            try:
                return self._run_once(problem, code)
            except SandboxError as exc:
                if attempt == 1:
                    return Verdict(False, "sandbox_error", str(exc), 0, len(problem.tests))
        raise AssertionError("unreachable")

    def _run_once(self, problem: Problem, code: str) -> Verdict:
        if problem.kind == "program":
            return self._run_program(problem, code)
        budget = self.budget_s(problem)
        tests = self.tests(problem)
        total = len(tests) if problem.kind != "check" else 1
        if total == 0:  # ml_ssd: a problem without private tests fails in its pass@k
            return Verdict(False, "no_private_tests", "the profile runs private tests only", 0, 0)
        with self.sandbox.slot() as slot:
            try:
                job = self._job(problem, code)
                longest = max((len(t.input.encode()) for t in tests), default=0)
                with slot.run(job, self.limits, budget, longest) as session:
                    clock = Clock(self.limits.time_limit_s, self.limits.grace_s, budget,
                                  per_test=self.profile.per_test_limit or problem.kind == "check")
                    if problem.kind == "check":
                        return run_check_script(session, problem, clock)
                    if problem.kind == "functional":
                        return run_call_tests(session, tests, clock, self.profile.call_rules)
                    return run_stdin_tests(session, tests, clock)
            except SandboxFailure as failure:
                return _refine(failure, slot.last_reap, total)

    def _run_program(self, problem: Problem, code: str) -> Verdict:
        language = str(problem.program_language)
        job = {"kind": "program", "language": language, "code": code}
        with self.sandbox.slot() as slot:
            try:
                run = slot.run_program(job, self.limits, self.budget_s(problem))
            except SandboxFailure as failure:  # the child died before taking the program
                return _refine(failure, slot.last_reap, 1)
        return program_verdict(run, language, self.limits.max_output_bytes)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.sandbox.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refine(failure: SandboxFailure, reaped: dict[str, Any], total: int) -> Verdict:
    """Use how the child died to name a failure the channel alone could not explain."""
    reason, detail = failure.reason, failure.detail
    status = reaped.get("status")
    if reason == "runtime_error" and reaped.get("exited_first") and isinstance(status, int):
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                reason, detail = "timeout", "CPU time limit exceeded"
            elif sig == signal.SIGXFSZ:
                reason, detail = "output_limit", "file size limit exceeded"
            else:
                detail = f"{detail} (killed by {signal.Signals(sig).name})"
        elif os.WIFEXITED(status):
            detail = f"{detail} (exit status {os.WEXITSTATUS(status)})"
    return Verdict(False, reason, detail, failure.tests_passed, total)
