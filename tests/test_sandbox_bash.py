"""Whole programs in the sandbox (`Problem.program_language`), bash above all: verdicts from exit
statuses, and hostile programs contained.

As in tests/test_sandbox.py, each hostile run is followed by the containment checks: no process
of the sandbox uids left, the templates the same processes as before, and no file of a sandbox
uid in the host's world-writable directories or the repository. Limits are small (1 s, 16
processes, 1 MiB of output) so that a containment bug cannot hurt the shared machine.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ssd.evaluation import Evaluator, Problem, Verdict
from ssd.evaluation.graders import PROFILES
from tests.test_sandbox import (  # noqa: F401
    loopback_listener,
    needs_root,
    sandbox_files,
    sandbox_processes,
    scratch,
)

TIME_LIMIT = 1.0
REPO_FILE = Path(__file__).resolve()


def program(language: str) -> Problem:
    return Problem(f"{language}-program", "", "", "", None, None, "", [], None,
                   program_language=language)


BASH, PYTHON = program("bash"), program("python")


@pytest.fixture(scope="module")
def ev() -> Iterator[Evaluator]:
    with Evaluator(workers=2, time_limit_s=TIME_LIMIT, memory_mb=512, max_output_bytes=1 << 20,
                   max_processes=16, cache=False) as evaluator:
        yield evaluator


@pytest.fixture(scope="module")
def templates(ev: Evaluator) -> list[int]:
    return list(ev.sandbox.template_pids)


def contained(ev: Evaluator, templates: list[int], code: str,
              problem: Problem = BASH) -> tuple[Verdict, float]:
    """The verdict and the seconds it took, after checking nothing of the run is left."""
    start = time.monotonic()
    verdict = ev.check(problem, code)
    elapsed = time.monotonic() - start
    assert sandbox_processes(ev) == []
    assert ev.sandbox.template_pids == templates
    assert sandbox_files(ev) == []
    return verdict, elapsed


# -- verdicts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("problem", "code", "passed", "reason"), [
    (BASH, 'f() { echo "$(( $1 + 1 ))"; }\nset -e\n[[ $(f 1) = "2" ]]\n', True, None),
    (BASH, 'f() { echo 0; }\nset -e\n[[ $(f 1) = "2" ]]\n', False, "wrong_answer"),
    (BASH, "f() {\n}\n", False, "compile_error"),
    (BASH, "no_such_command_here\n", False, "runtime_error"),
    (BASH, "exit 3\n", False, "runtime_error"),
    (BASH, "yes | head -n 1 >/dev/null\n", True, None),  # yes ends by SIGPIPE, as in a shell
    (PYTHON, "def f(x):\n    return x + 1\nassert f(1) == 2\n", True, None),
    (PYTHON, "def f(x):\n    return x\nassert f(1) == 2\n", False, "wrong_answer"),
    (PYTHON, "def f(:\n", False, "compile_error"),
    (PYTHON, "[][1]\n", False, "runtime_error"),
    (PYTHON, "import sys\nsys.exit(0)\nassert False\n", False, "runtime_error"),  # not its end
    (PYTHON, "raise SystemExit('bye')\n", False, "runtime_error"),
    (PYTHON, "x = bytearray(1 << 30)\n", False, "memory"),
], ids=["bash-pass", "bash-wrong", "bash-syntax", "bash-not-found", "bash-exit-3", "bash-sigpipe",
        "py-pass", "py-assert", "py-syntax", "py-error", "py-exit-0", "py-exit-text", "py-memory"])
def test_exit_status_is_the_verdict(ev: Evaluator, templates: list[int], problem: Problem,
                                    code: str, passed: bool, reason: str | None) -> None:
    verdict, _ = contained(ev, templates, code, problem)
    assert (verdict.passed, verdict.reason) == (passed, reason), verdict


def test_the_detail_is_the_end_of_stderr(ev: Evaluator) -> None:
    verdict = ev.check(BASH, "for i in $(seq 1000); do echo \"line $i\" >&2; done\nexit 4\n")
    assert verdict.detail.startswith("...") and verdict.detail.endswith("line 1000")
    verdict = ev.check(PYTHON, "def f():\n    raise KeyError('k')\nf()\n")
    assert verdict.detail.endswith("KeyError: 'k'") and "_harness" not in verdict.detail


def test_programs_run_with_their_interpreters_defaults(ev: Evaluator) -> None:
    """No LiveCodeBench prelude and Python's own recursion limit, as `python program.py`."""
    assert ev.check(PYTHON, "import sys\nassert sys.getrecursionlimit() == 1000\n").passed
    assert ev.check(PYTHON, "defaultdict\n").reason == "runtime_error"
    assert ev.check(PYTHON, "assert __name__ == '__main__'\n").passed


def test_a_problem_needs_no_tests_and_no_extraction(ev: Evaluator) -> None:
    assert ev.check(BASH, "   \n").reason == "no_code"
    with pytest.raises(ValueError, match="whole program"):
        ev.check_response(BASH, "```bash\nexit 0\n```")
    with pytest.raises(ValueError, match="program_language"):
        Problem("x", "", "", "", None, None, "", [], None, program_language="perl")


@pytest.mark.parametrize("profile", ["lcb", "ml_ssd"])
def test_every_grader_profile_runs_programs_alike(profile: str) -> None:
    """Whole programs have no reference semantics to reproduce: exit status 0 under every
    profile (the ml_ssd profile's private-tests rule would otherwise leave nothing to run).
    Its templates' numpy and pandas matter only for its prelude: left out, to start fast."""
    rules = replace(PROFILES[profile], preload=())
    with Evaluator(workers=1, time_limit_s=TIME_LIMIT, profile=rules) as evaluator:
        assert [evaluator.check(problem, code).passed for problem, code in [
            (PYTHON, "assert 1 + 1 == 2\n"), (BASH, "[[ 2 = 2 ]]\n"),
            (PYTHON, "assert 1 + 1 == 3\n")]] == [True, True, False]


def test_the_language_is_part_of_the_fingerprint() -> None:
    assert BASH.fingerprint != PYTHON.fingerprint
    assert BASH.kind == PYTHON.kind == "program"


# -- hostile programs -----------------------------------------------------------------------------
def test_bash_runs_under_the_caps(ev: Evaluator) -> None:
    """Before the fork bomb: bash and its commands inherit the process cap (and the others)."""
    code = ('[[ $(ulimit -u) = 16 && $(ulimit -v) = $(( 512 * 1024 )) && $(ulimit -n) = 64 ]]\n'
            '[[ $(id -u) != 0 ]]\n')
    assert ev.check(BASH, code).passed


@needs_root
@pytest.mark.parametrize("code", [
    ":(){ :|:& };:\nwhile :; do :; done\n",
    "while :; do ( while :; do :; done ) & done\n",
], ids=["classic", "spinning-children"])
def test_fork_bomb(ev: Evaluator, templates: list[int], code: str) -> None:
    verdict, elapsed = contained(ev, templates, code)
    assert verdict.reason == "timeout"
    assert elapsed < TIME_LIMIT + 5  # killing a few hundred bombs may take a moment


@needs_root
def test_rm_rf_outside_its_folder(ev: Evaluator, templates: list[int],
                                  scratch: Path) -> None:  # noqa: F811  (the imported fixture)
    victim = scratch / "victim"
    victim.write_text("keep me")
    victim.chmod(0o666)  # even a world-writable file cannot be unlinked from a 0755 root dir
    marker = Path("/tmp") / f"ssd-sandbox-marker-{secrets.token_hex(4)}"
    marker.write_text("keep me")
    marker.chmod(0o666)
    try:
        code = (f"rm -rf {scratch} {REPO_FILE} /tmp/* \"$HOME\"/.. 2>/dev/null\n"
                f"[[ ! -e {victim} && ! -e {REPO_FILE} ]]\n")
        verdict, _ = contained(ev, templates, code)
        assert verdict.reason == "wrong_answer"
        assert victim.read_text() == marker.read_text() == "keep me"
        assert REPO_FILE.exists()
    finally:
        marker.unlink()


def test_network_is_unreachable(ev: Evaluator, templates: list[int]) -> None:
    server = loopback_listener(ev)
    port = server.getsockname()[1]
    code = f"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1\necho hello >&3\n"
    try:
        verdict, _ = contained(ev, templates, code)
        assert verdict.reason == "runtime_error" and "unreachable" in verdict.detail
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_background_processes_do_not_outlive_the_program(
        ev: Evaluator, templates: list[int]) -> None:
    """The program's own status decides, at once; whatever it left running is killed."""
    code = """
sleep 1000 &
( trap '' HUP INT TERM; while :; do sleep 0.05; done ) &
setsid bash -c 'sleep 1000 & disown' &
nohup sleep 1000 >/dev/null 2>&1 &
disown -a
sleep 0.2
exit 0
"""
    verdict, elapsed = contained(ev, templates, code)
    assert verdict.passed
    assert elapsed < TIME_LIMIT


def test_sleep_1000(ev: Evaluator, templates: list[int]) -> None:
    verdict, elapsed = contained(ev, templates, "sleep 1000\nexit 0\n")
    assert verdict.reason == "timeout"
    assert elapsed < TIME_LIMIT + 1.5


@pytest.mark.parametrize("code", [
    "head -c 100000000 /dev/zero\nexit 0\n",
    "head -c 100000000 /dev/zero >&2\nexit 0\n",
    "line=$(printf '%01000d' 0)\nfor ((i = 0; i < 100000; i++)); do echo \"$line\"; done\n",
], ids=["stdout", "stderr", "bash-builtin"])
def test_100_mb_of_output(ev: Evaluator, templates: list[int], code: str) -> None:
    verdict, elapsed = contained(ev, templates, code)
    assert verdict.reason == "output_limit"
    assert elapsed < TIME_LIMIT + 1.5


def test_temp_files_do_not_persist(ev: Evaluator, templates: list[int]) -> None:
    name = f"ssd-sandbox-mark-{secrets.token_hex(4)}"
    writer = f"echo x > /tmp/{name}\necho x > \"$HOME\"/{name}\necho x > {name}\n"
    reader = f"[[ ! -e /tmp/{name} && ! -e \"$HOME\"/{name} && ! -e {name} ]]\n"
    assert contained(ev, templates, writer)[0].passed
    assert contained(ev, templates, reader)[0].passed
    assert not any(os.path.exists(os.path.join(d, name)) for d in ("/tmp", "/var/tmp"))


def test_still_healthy_after_everything(ev: Evaluator, templates: list[int]) -> None:
    assert ev.check(BASH, "[[ $(echo ok) = ok ]]\n").passed
    assert ev.sandbox.template_pids == templates
    assert sandbox_processes(ev) == []
