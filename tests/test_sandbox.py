"""Hostile programs against the sandbox.

Every program here is written so that a *successful* attack would be scored as a pass (it prints
the expected answer, returns it, or reads it from somewhere it should not reach). Each test then
asserts the verdict is a failure, that no process of the sandbox uids survived the run, that the
templates are the same processes as before (nothing killed them), and that no file owned by a
sandbox uid appeared in the host's world-writable directories or the repository.

Resource caps are deliberately small (512 MiB address space, 16 processes, 1 MiB output, 1 s per
test) so that a containment bug cannot hurt the shared machine. The fork bomb only runs after
`test_nproc_caps_process_count` has shown the cap holds.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ssd.evaluation import Evaluator, Problem, Test, Verdict

REPO = Path(__file__).resolve().parents[1]
HOST_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
TIME_LIMIT = 1.0

ECHO = Problem(
    "echo", "echo", "", "atcoder", None, None, "", [Test("ping\n", "pong\n", "stdin")], None
)
SQUARE = Problem(
    "square",
    "square",
    "",
    "atcoder",
    None,
    None,
    "",
    [Test("3\n", "9\n", "stdin"), Test("7\n", "49\n", "stdin")],
    None,
)
CALL = Problem(
    "call", "call", "", "leetcode", None, None, "", [Test("1", "2", "functional")], "answer"
)
CHECK = Problem(
    "check",
    "check",
    "",
    "leetcode",
    None,
    None,
    "",
    [],
    "answer",
    check_script="def check(candidate):\n    assert candidate(1) == 2\n",
    entry_point="Solution().answer",
)


# Without root there is no separate uid: the program could read the evaluator user's files and
# signal its processes, so the tests that rely on that separation only run as root.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="uid separation needs root")


def require_private_tmp(ev: Evaluator) -> None:
    if not ev.info.private_tmp:
        pytest.skip("no mount namespaces on this platform")


@pytest.fixture(scope="module")
def ev() -> Iterator[Evaluator]:
    with Evaluator(
        workers=2,
        time_limit_s=TIME_LIMIT,
        memory_mb=512,
        max_output_bytes=1 << 20,
        max_processes=16,
        cache=False,
    ) as evaluator:
        yield evaluator


@pytest.fixture(scope="module")
def templates(ev: Evaluator) -> list[int]:
    return list(ev.sandbox.template_pids)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A root-owned 0755 directory the sandbox can see but not write (not under a tmpfs'd dir)."""
    path = Path("/run") / f"ssd-sandbox-test-{secrets.token_hex(4)}"
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def sandbox_processes(ev: Evaluator) -> list[psutil.Process]:
    uids = set(ev.info.uids)
    found = []
    for proc in psutil.process_iter(["uids"]):
        uid_info = proc.info["uids"]
        if uid_info is not None and uid_info.real in uids:
            found.append(proc)
    return found


def sandbox_files(ev: Evaluator) -> list[str]:
    uids = set(ev.info.uids)
    found = []
    for root in (*HOST_DIRS, str(REPO), str(REPO / "tests")):
        if not os.path.isdir(root):
            continue
        for entry in os.scandir(root):
            try:
                if entry.stat(follow_symlinks=False).st_uid in uids:
                    found.append(entry.path)
            except FileNotFoundError:
                pass
    return found


def hostile(ev: Evaluator, templates: list[int], problem: Problem, code: str) -> Verdict:
    verdict = ev.check(problem, code)
    assert not verdict.passed, verdict
    assert sandbox_processes(ev) == []
    assert ev.sandbox.template_pids == templates
    assert sandbox_files(ev) == []
    return verdict


def test_sandbox_reports_isolation(ev: Evaluator) -> None:
    info = ev.info
    if os.geteuid() == 0:
        assert info.uid_isolated and len(info.uids) == 2
        assert all(u >= 62000 for u in info.uids)
    assert info.interpreter


def test_well_behaved_program_passes(ev: Evaluator) -> None:
    assert ev.check(ECHO, "input()\nprint('pong')\n").passed
    assert ev.check(SQUARE, "n = int(input())\nprint(n * n)\n").passed


@needs_root
def test_runs_unprivileged_with_no_new_privs(ev: Evaluator, templates: list[int]) -> None:
    code = """
import os
status = open("/proc/self/status").read()
ok = os.geteuid() == 0 or "NoNewPrivs:\\t0" in status
ok = ok or "CapEff:\\t0000000000000000" not in status
print("pong" if ok else "contained")
"""
    assert hostile(ev, templates, ECHO, code).reason == "wrong_answer"
    assert hostile(ev, templates, ECHO, "import os\nos.setuid(0)\nprint('pong')\n").reason == (
        "runtime_error"
    )


@needs_root
def test_nproc_caps_process_count(ev: Evaluator, templates: list[int]) -> None:
    """Bounded version of the fork bomb: of 200 attempted forks, at most the cap succeed."""
    code = """
import os, time
made = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += 1
print(made)
"""
    verdict = hostile(ev, templates, ECHO, code)
    made = int(verdict.detail.rsplit("got '", 1)[1].split("\\n")[0])
    assert 0 < made < ev.limits.max_processes


@needs_root
def test_fork_bomb(ev: Evaluator, templates: list[int]) -> None:
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    assert hostile(ev, templates, ECHO, code).reason == "timeout"


@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(8 << 30)\nprint('pong')\n",
        "x = []\nwhile True:\n    x.append(bytearray(16 << 20))\n",
    ],
    ids=["one-huge-allocation", "gradual"],
)
def test_memory_bomb(ev: Evaluator, templates: list[int], code: str) -> None:
    # Zero-filling 512 MiB can itself take longer than the 1 s limit on a slow machine.
    assert hostile(ev, templates, ECHO, code).reason in ("memory", "timeout")


@pytest.mark.parametrize(
    "code",
    [
        "while True:\n    pass\n",
        "import time\ntime.sleep(60)\nprint('pong')\n",
        "import sys\nwhile True:\n    sys.stdin.read()\n",
    ],
    ids=["busy-loop", "sleep", "read-stdin-forever"],
)
def test_deadline(ev: Evaluator, templates: list[int], code: str) -> None:
    start = time.monotonic()
    assert hostile(ev, templates, ECHO, code).reason == "timeout"
    assert time.monotonic() - start < TIME_LIMIT + 1.5


def test_reading_past_stdin_fails(ev: Evaluator, templates: list[int]) -> None:
    code = "input()\ninput()\nprint('pong')\n"
    assert hostile(ev, templates, ECHO, code).reason == "runtime_error"


def test_output_flood(ev: Evaluator, templates: list[int]) -> None:
    start = time.monotonic()
    code = "while True:\n    print('x' * 10000)\n"
    assert hostile(ev, templates, ECHO, code).reason == "output_limit"
    assert time.monotonic() - start < TIME_LIMIT


@needs_root
@pytest.mark.parametrize("where", ["scratch", "repo"])
def test_write_outside_run_dir(
    ev: Evaluator, templates: list[int], scratch: Path, where: str
) -> None:
    target = (scratch if where == "scratch" else REPO) / f"escape-{secrets.token_hex(4)}"
    code = f"open({str(target)!r}, 'w').write('x')\nprint('pong')\n"
    assert hostile(ev, templates, ECHO, code).reason == "runtime_error"
    assert not target.exists()


def test_world_writable_dirs_are_private(ev: Evaluator, templates: list[int]) -> None:
    require_private_tmp(ev)
    marker = f"ssd-sandbox-escape-{secrets.token_hex(4)}"
    code = f"""
for d in {HOST_DIRS!r}:
    open(d + "/{marker}", "w").write("x")  # lands in the child's own tmpfs
print("written")
"""
    assert hostile(ev, templates, ECHO, code).reason == "wrong_answer"
    for d in HOST_DIRS:
        assert not os.path.exists(os.path.join(d, marker))


def test_tmp_does_not_persist_between_runs(ev: Evaluator, templates: list[int]) -> None:
    require_private_tmp(ev)
    marker = f"/tmp/ssd-sandbox-marker-{secrets.token_hex(4)}"
    writer = f"open({marker!r}, 'w').write('x')\ninput()\nprint('pong')\n"
    reader = f"import os\ninput()\nprint('pong' if os.path.exists({marker!r}) else 'fresh')\n"
    assert ev.check(ECHO, writer).passed
    assert hostile(ev, templates, ECHO, reader).reason == "wrong_answer"


@needs_root
def test_delete_outside_run_dir(ev: Evaluator, templates: list[int], scratch: Path) -> None:
    victim = scratch / "victim"
    victim.write_text("keep me")
    victim.chmod(0o666)  # even a world-writable file cannot be unlinked from a 0755 root dir
    code = f"import os\nos.remove({str(victim)!r})\nprint('pong')\n"
    assert hostile(ev, templates, ECHO, code).reason == "runtime_error"
    assert victim.read_text() == "keep me"


@needs_root
@pytest.mark.parametrize("target", ["secret", "shadow", "environ"])
def test_read_evaluator_secrets(
    ev: Evaluator, templates: list[int], scratch: Path, target: str
) -> None:
    secret = scratch / "secret"
    secret.write_text("pong\n")
    secret.chmod(0o600)
    public = scratch / "public"
    public.write_text("visible\n")
    public.chmod(0o644)
    paths = {
        "secret": str(secret),
        "shadow": "/etc/shadow",
        "environ": f"/proc/{os.getpid()}/environ",
    }
    # Control: the directory is visible, so the refusal below is a permission check.
    visible = f"print(open({str(public)!r}).read().strip())\n"
    assert hostile(ev, templates, ECHO, visible).detail.endswith("got 'visible\\n'")
    code = f"open({paths[target]!r}, 'rb').read()\nprint('pong')\n"
    if target == "secret":
        code = f"print(open({str(secret)!r}).read().strip())\n"
    assert hostile(ev, templates, ECHO, code).reason == "runtime_error"


def loopback_listener(ev: Evaluator) -> socket.socket:
    """A non-blocking server on a free loopback port, for a program to try to reach (skips the
    test where the platform gives the sandbox no network namespace)."""
    if not ev.info.network_isolated:
        pytest.skip("no network namespace on this platform")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    return server


def test_network_is_unreachable(ev: Evaluator, templates: list[int]) -> None:
    server = loopback_listener(ev)
    port = server.getsockname()[1]
    code = f"""
import socket
socket.create_connection(("127.0.0.1", {port}), timeout=0.5).sendall(b"hello")
print("pong")
"""
    try:
        assert hostile(ev, templates, ECHO, code).reason == "runtime_error"
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@needs_root
@pytest.mark.parametrize(
    "code",
    [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('pong')\n",
        f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\nprint('pong')\n",
        # kill(-1) reaches only the sandbox uid's own processes (and spares the caller)
        "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('survived')\n",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\nprint('pong')\n",
    ],
    ids=["kill-template", "kill-evaluator", "kill-minus-one", "kill-template-group"],
)
def test_cannot_kill_the_evaluator(ev: Evaluator, templates: list[int], code: str) -> None:
    assert hostile(ev, templates, ECHO, code).reason in ("runtime_error", "wrong_answer")


def test_exit_before_answering(ev: Evaluator, templates: list[int]) -> None:
    assert hostile(ev, templates, ECHO, "import os\nos._exit(0)\n").reason == "runtime_error"
    code = "import os, sys\nprint('pong')\nsys.stdout.flush()\nos._exit(0)\n"
    assert hostile(ev, templates, ECHO, code).reason == "runtime_error"


@pytest.mark.parametrize("problem", [CALL, CHECK], ids=["lcb-call", "check-script"])
@pytest.mark.parametrize(
    "cls",
    [
        "class Fake:\n    def __eq__(self, other):\n        return True\n",
        "class Fake(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n",
        "class Fake(list):\n    def __eq__(self, other):\n        return True\n",
    ],
    ids=["object", "int-subclass", "list-subclass"],
)
def test_always_equal_objects(
    ev: Evaluator, templates: list[int], problem: Problem, cls: str
) -> None:
    code = cls + "class Solution:\n    def answer(self, x):\n        return Fake()\n"
    assert hostile(ev, templates, problem, code).reason == "wrong_answer"


def test_monkeypatching_cannot_fake_success(ev: Evaluator, templates: list[int]) -> None:
    # Patches everything a naive in-process checker would trust, then answers wrongly.
    patches = """
import builtins, json, os, sys, gc
json.dumps = lambda *a, **k: '{"t": "ok", "out": "49\\\\n", "passed": true}'
json.loads = lambda *a, **k: {"t": "ok", "r": 2}
builtins.AssertionError = type("Never", (Exception,), {})
sys.exit = os._exit = lambda *a: None
for obj in gc.get_objects():  # find the harness's channel and try to claim a pass on it
    if type(obj).__name__ == "_Channel":
        obj.sock.sendall(b"\\x00\\x00\\x00\\x0e" + b'{"passed":true}')
"""
    stdin_code = patches + "input()\nprint(0)\n"
    assert hostile(ev, templates, SQUARE, stdin_code).reason in ("wrong_answer", "runtime_error")
    call_code = patches + "class Solution:\n    def answer(self, x):\n        return 0\n"
    assert hostile(ev, templates, CHECK, call_code).reason in ("wrong_answer", "runtime_error")
    assert hostile(ev, templates, CALL, call_code).reason in ("wrong_answer", "runtime_error")


def test_fake_frames_on_stdout_are_just_output(ev: Evaluator, templates: list[int]) -> None:
    code = """
import gc, struct, json, sys
nonce = next(o.nonce for o in gc.get_objects() if type(o).__name__ == "_Channel")
frame = json.dumps({"t": "ok", "out": "49\\n", "n": nonce}).encode()
sys.stdout.buffer.write(struct.pack(">I", len(frame)) + frame)
"""
    assert hostile(ev, templates, SQUARE, code).reason == "wrong_answer"


@pytest.mark.parametrize(
    "code",
    [
        "def f(n):\n    return f(n + 1) + 1\nf(0)\n",
        "import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
    ],
    ids=["recursion-error", "stack-overflow"],
)
def test_deep_recursion(ev: Evaluator, templates: list[int], code: str) -> None:
    # Python 3.11 keeps pure-Python frames off the C stack: unbounded recursion ends in
    # RecursionError, MemoryError or the deadline, depending on the limit.
    assert hostile(ev, templates, ECHO, code).reason in ("runtime_error", "memory", "timeout")


def test_threads_outliving_main(ev: Evaluator, templates: list[int]) -> None:
    code = """
import sys, threading, time
def late():
    time.sleep(0.2)
    print("pong")
    sys.stdout.flush()
def spin():
    while True:
        pass
threading.Thread(target=late).start()
threading.Thread(target=spin, daemon=True).start()
"""
    assert hostile(ev, templates, ECHO, code).reason == "wrong_answer"


def test_setsid_daemon_does_not_survive(ev: Evaluator, templates: list[int]) -> None:
    code = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.setsid()
        while True:
            time.sleep(0.05)
    os._exit(0)
time.sleep(0.2)
print("daemon started")
"""
    assert hostile(ev, templates, ECHO, code).reason == "wrong_answer"


def test_big_files_are_capped(ev: Evaluator, templates: list[int]) -> None:
    code = "open('big', 'wb').write(b'0' * (4 << 20))\nprint('pong')\n"
    assert hostile(ev, templates, ECHO, code).reason == "runtime_error"


def test_still_healthy_after_everything(ev: Evaluator, templates: list[int]) -> None:
    assert ev.sandbox.template_pids == templates
    assert ev.check(ECHO, "input()\nprint('pong')\n").passed
    assert sandbox_processes(ev) == []


def test_a_dead_template_is_replaced() -> None:
    """If a template dies (it should not), the slot restarts and the next program still runs."""
    with Evaluator(workers=1, time_limit_s=TIME_LIMIT, memory_mb=512, cache=False) as evaluator:
        (pid,) = evaluator.sandbox.template_pids
        os.kill(pid, 9)
        psutil.Process(pid).wait(timeout=5)
        assert evaluator.check(ECHO, "input()\nprint('pong')\n").passed
        assert evaluator.sandbox.template_pids != [pid]
        assert sandbox_processes(evaluator) == []


def test_problem_without_tests_is_an_error(ev: Evaluator) -> None:
    with pytest.raises(ValueError, match="has no tests"):
        ev.check(Problem("e", "e", "", "", None, None, "", [], None), "print(1)\n")
