"""Process sandbox for untrusted programs: a pool of warm template processes, one per worker slot.

Design (details in `_zygote.py` and `_harness.py`):

* Each slot owns a template process and, when the evaluator runs as root, a dedicated uid from a
  pool (`uid_base`..., default 62000+) allocated under a `flock` so that concurrent evaluators
  never share one. A dedicated uid makes RLIMIT_NPROC meaningful (root ignores it, and a shared
  uid such as `nobody` would also count unrelated daemons) and lets the cleanup kill "every process
  of this uid" without touching anything else.
* Per program the template forks a child that enters new mount/network/IPC namespaces (no network
  interfaces, private tmpfs over /tmp, /var/tmp, /dev/shm, /run/lock), sets rlimits and
  no_new_privs, drops to the slot uid and serves requests over a private socket.
* A whole program (`Slot.run_program`: Python in the forked child, bash exec'd in its place)
  writes stdout and stderr into memory files of the evaluator; the template waits for its exit
  and reaps it, and that exit status is the program's verdict.
* After each program: SIGKILL to the child's process group, then `kill(-1)` as the slot uid, then
  reap; the template is a child subreaper, so processes that escaped the group (setsid,
  double fork) are still its descendants and are verified gone before the slot is reused.

Where the platform does not allow something, the sandbox degrades and says so in `SandboxInfo`
instead of failing:

* not root: no uid switch. Programs run as the evaluator's own user and could read that user's
  files or signal its processes. Namespaces then come from an unprivileged user namespace
  (mapping only that uid) when the kernel allows one, and the child drops every capability after
  mounting its private /tmp; RLIMIT_NPROC is counted per user namespace, so it still caps forks.
  Leftovers are found through the subreaper (every orphan is re-parented to the template).
* no namespaces at all: `network_isolated=False`, `private_tmp=False`; the run directory is a
  real temporary directory (owned by the slot uid) removed after the run, and programs can
  reach the network and the host's /tmp.

Aggregate memory is bounded per process (RLIMIT_AS), so a program that forks can use up to
`max_processes * memory_mb`; cgroups would bound the total but belong to whoever runs the
machine, so they are not touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import importlib.util
import json
import os
import pwd
import queue
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ssd.sandbox import codec

ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_zygote.py")
LOCK_DIRS = ("/run/ssd-sandbox", os.path.join(tempfile.gettempdir(), "ssd-sandbox-locks"))
CONTROL_TIMEOUT_S = 30.0
FRAME_OVERHEAD = 1 << 16
TAIL_BYTES = 4096  # of a whole program's stderr, kept for the verdict's detail


@dataclass(frozen=True)
class Limits:
    """Per-program resource limits. `time_limit_s` applies to each request (one test)."""

    time_limit_s: float = 6.0
    memory_mb: int = 2048
    max_output_bytes: int = 16 << 20
    max_processes: int = 8  # RLIMIT_NPROC of the slot uid: processes and threads
    max_open_files: int = 64
    tmpfs_mb: int = 64
    grace_s: float = 0.25  # wall-clock slack on top of time_limit_s before the hard kill

    def rlimits(self, budget_s: float, input_bytes: int = 0) -> dict[str, int]:
        """`input_bytes`: the largest stdin the harness must write into a memfd for a test.

        The soft RLIMIT_FSIZE caps output; the hard limit leaves room for the harness to copy
        an input larger than the output cap (it raises its soft limit just for that copy).
        """
        return {
            "cpu_s": max(1, int(budget_s + 1)),
            "as_bytes": self.memory_mb << 20,
            "fsize_bytes": self.max_output_bytes + 1,
            "fsize_hard_bytes": max(self.max_output_bytes, input_bytes) + 1,
            "nofile": self.max_open_files,
            "nproc": self.max_processes,
            "tmpfs_bytes": self.tmpfs_mb << 20,
        }


@dataclass
class SandboxInfo:
    """What isolation the sandbox actually achieved on this machine."""

    uid_isolated: bool
    uids: list[int]
    network_isolated: bool
    private_tmp: bool
    hidden_paths: list[str]
    interpreter: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProgramRun:
    """How a whole program ended (`Slot.run_program`). The exit status comes from the template,
    which reaps the program, never from anything the program could write."""

    exited: bool  # ended on its own within the time limit
    status: int | None  # its wait status (`os.waitstatus_to_exitcode`), None if never reaped
    stdout_bytes: int
    stderr_bytes: int
    stderr_tail: str  # the last TAIL_BYTES of what it wrote to stderr


class SandboxFailure(Exception):
    """The program did not answer a request properly; `reason` is a Verdict reason."""

    def __init__(self, reason: str, detail: str = "", tests_passed: int = 0) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.tests_passed = tests_passed

    def at(self, test_index: int) -> SandboxFailure:
        """The same failure, located at a test (the tests before it passed)."""
        return SandboxFailure(self.reason, f"test {test_index}: {self.detail}", test_index)


class SandboxError(RuntimeError):
    """The sandbox itself misbehaved (template died, could not start)."""


def _allocate_uids(n: int, base: int, span: int) -> list[tuple[int, int]]:
    """Lock `n` unused uids in [base, base+span). Returns (uid, lock_fd) pairs."""
    lock_dir = None
    for d in LOCK_DIRS:
        with contextlib.suppress(OSError):
            os.makedirs(d, mode=0o700, exist_ok=True)
            st = os.stat(d)
            if st.st_uid == 0 and not st.st_mode & 0o022:  # not hijackable by other users
                lock_dir = d
                break
    if lock_dir is None:
        raise SandboxError("no usable lock directory for the sandbox uid pool")
    got: list[tuple[int, int]] = []
    for uid in range(base, base + span):
        if len(got) == n:
            break
        try:  # never borrow a real account or group: kill(-1) as that uid would hit its processes
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            pass
        fd = os.open(os.path.join(lock_dir, f"uid-{uid}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        got.append((uid, fd))
    if len(got) < n:
        for _, fd in got:
            os.close(fd)
        raise SandboxError(f"only {len(got)} of {n} sandbox uids free in [{base}, {base + span})")
    return got


def _module_paths(names: tuple[str, ...]) -> list[str]:
    """The sys.path entries holding ``names`` (the template runs with -I -S: no site-packages)."""
    paths = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SandboxError(f"module {name} is not installed (a grader profile needs it)")
        paths.append(os.path.dirname(os.path.dirname(spec.origin)))
    return sorted(set(paths))


class Session:
    """One sandboxed program: framed requests and replies over its private socket."""

    def __init__(self, sock: socket.socket, nonce: str, frame_cap: int) -> None:
        self.sock = sock
        self.nonce = nonce
        self.frame_cap = frame_cap
        self._buf = bytearray()

    def send(self, obj: dict[str, Any], deadline: float) -> None:
        self._set_timeout(deadline)
        try:
            self.sock.sendall(codec.pack_frame(obj))
        except TimeoutError as exc:
            raise SandboxFailure("timeout", "program stopped reading its input") from exc
        except OSError as exc:
            raise SandboxFailure(
                "runtime_error", "program exited before reading its input"
            ) from exc

    def recv(self, deadline: float) -> dict[str, Any]:
        header = self._exact(codec.HEADER.size, deadline)
        (size,) = codec.HEADER.unpack(header)
        if size > self.frame_cap:
            raise SandboxFailure("output_limit", f"reply of {size} bytes")
        try:
            reply = json.loads(self._exact(size, deadline))
        except ValueError as exc:
            raise SandboxFailure("runtime_error", "malformed reply from the sandbox") from exc
        if not isinstance(reply, dict) or reply.get("n") != self.nonce:
            raise SandboxFailure("runtime_error", "reply without the session nonce")
        return reply

    def request(self, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        self.send(obj, deadline)
        return self.recv(deadline)

    def _set_timeout(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxFailure("timeout", "time limit exceeded")
        self.sock.settimeout(remaining)

    def _exact(self, size: int, deadline: float) -> bytes:
        while len(self._buf) < size:
            self._set_timeout(deadline)
            try:
                chunk = self.sock.recv(max(size - len(self._buf), 1 << 16))
            except TimeoutError as exc:
                raise SandboxFailure("timeout", "time limit exceeded") from exc
            except OSError as exc:
                raise SandboxFailure("runtime_error", f"channel error: {exc}") from exc
            if not chunk:
                raise SandboxFailure("runtime_error", "program exited without answering")
            self._buf += chunk
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data


class Slot:
    """A template process plus its uid; runs one program at a time."""

    def __init__(self, interpreter: str, uid: int | None, namespaces: bool,
                 preload: tuple[str, ...] = ()) -> None:
        self.interpreter = interpreter
        self.uid = uid
        self.namespaces = namespaces
        self.preload = preload
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl: socket.socket | None = None
        self.ready: dict[str, Any] = {}
        self.last_reap: dict[str, Any] = {}  # how the last program ended (exit status, ...)
        self.start()

    def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {
            "uid": self.uid,
            "gid": self.uid,
            "namespaces": self.namespaces,
            "run_root": tempfile.gettempdir(),
            "preload": list(self.preload),
            "module_paths": _module_paths(self.preload),
        }
        # Minimal environment: the template's exec-time environment is what every child's
        # /proc/self/environ shows, so nothing of the evaluator's (tokens, keys) may reach it.
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            [self.interpreter, "-I", "-S", "-B", ZYGOTE, str(child.fileno()), json.dumps(config)],
            pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        child.close()
        parent.settimeout(CONTROL_TIMEOUT_S)
        self.ctl = parent
        self.ready = self._recv_ctl()
        if "error" in self.ready:
            self.stop()
            raise SandboxError(f"sandbox template failed to start: {self.ready['error']}")

    def _send_ctl(self, msg: bytes, fds: list[int] | None = None) -> None:
        assert self.ctl is not None
        try:
            socket.send_fds(self.ctl, [msg], fds or [])
        except OSError as exc:
            raise SandboxError(f"sandbox template unreachable: {exc}") from exc

    def _recv_ctl(self) -> dict[str, Any]:
        assert self.ctl is not None
        try:
            data = self.ctl.recv(1 << 16)
        except OSError as exc:
            raise SandboxError(f"sandbox template unresponsive: {exc}") from exc
        if not data:
            raise SandboxError("sandbox template exited")
        return json.loads(data)

    def stop(self) -> None:
        if self.ctl is not None:
            with contextlib.suppress(OSError):
                self.ctl.send(json.dumps({"op": "quit"}).encode())
            self.ctl.close()
            self.ctl = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        self.start()

    @contextlib.contextmanager
    def run(
        self, job: dict[str, Any], limits: Limits, budget_s: float, input_bytes: int = 0,
        outputs: tuple[int, int] | None = None,
    ) -> Iterator[Session]:
        """Start a sandboxed child, send it `job`, yield the session; always clean up after.

        outputs: files for the child's stdout and stderr (default /dev/null)."""
        assert self.ctl is not None
        self.last_reap = {}
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            rlimits = limits.rlimits(budget_s, input_bytes)
            msg = json.dumps({"op": "run", "limits": rlimits}).encode()
            try:
                self._send_ctl(msg, [child.fileno(), *(outputs or ())])
                started = self._recv_ctl()
            finally:
                child.close()
            if started.get("op") != "started":
                raise SandboxError(f"could not start a sandboxed program: {started}")
            nonce = secrets.token_hex(16)
            frame_cap = 8 * limits.max_output_bytes + FRAME_OVERHEAD
            session = Session(parent, nonce, frame_cap)
            session.send({**job, "nonce": nonce}, time.monotonic() + CONTROL_TIMEOUT_S)
            yield session
        finally:
            parent.close()  # a child still blocked on its socket sees EOF
            self.last_reap = self._reap()

    def run_program(self, job: dict[str, Any], limits: Limits, timeout_s: float) -> ProgramRun:
        """Run a whole program (`job` of kind "program") until it exits or `timeout_s` (plus the
        grace) passes; then everything it started is killed. Its stdout and stderr go to memory
        files of this process, capped by the sandbox's file-size limit."""
        out, err = os.memfd_create("stdout"), os.memfd_create("stderr")
        try:
            with self.run(job, limits, timeout_s, outputs=(out, err)):
                exited = self._wait(timeout_s + limits.grace_s)
            err_bytes = os.fstat(err).st_size
            tail = os.pread(err, TAIL_BYTES, max(0, err_bytes - TAIL_BYTES))
            return ProgramRun(exited, self.last_reap.get("status"), os.fstat(out).st_size,
                              err_bytes, tail.decode("utf-8", errors="replace"))
        finally:
            os.close(out)
            os.close(err)

    def _wait(self, timeout_s: float) -> bool:
        assert self.ctl is not None
        self._send_ctl(json.dumps({"op": "wait", "timeout_s": timeout_s}).encode())
        self.ctl.settimeout(timeout_s + CONTROL_TIMEOUT_S)
        try:
            return bool(self._recv_ctl()["exited"])
        finally:
            self.ctl.settimeout(CONTROL_TIMEOUT_S)

    def _reap(self) -> dict[str, Any]:
        self._send_ctl(json.dumps({"op": "reap"}).encode())
        reaped = self._recv_ctl()
        if reaped.get("leaked"):
            raise SandboxError(f"{reaped['leaked']} sandboxed processes survived cleanup")
        return reaped


class Sandbox:
    """A pool of slots; `with sandbox.slot() as slot:` borrows one for a single program."""

    def __init__(
        self,
        workers: int,
        interpreter: str | None = None,
        uid_base: int = 62000,
        uid_span: int = 1000,
        namespaces: bool = True,
        preload: tuple[str, ...] = (),
    ) -> None:
        """preload: modules every template imports before forking programs."""
        self.interpreter = interpreter or sys.executable
        self._locks: list[int] = []
        self._slots: list[Slot] = []
        self._free: queue.Queue[Slot] = queue.Queue()
        self._lock = threading.Lock()
        notes = []
        if os.geteuid() == 0:
            allocated = _allocate_uids(workers, uid_base, uid_span)
            self._locks = [fd for _, fd in allocated]
            uids: list[int | None] = [uid for uid, _ in allocated]
        else:
            uids = [None] * workers
            notes.append("not root: programs run as the evaluator's own uid (weaker isolation)")
        try:
            for uid in uids:
                slot = Slot(self.interpreter, uid, namespaces, preload)
                self._slots.append(slot)
                self._free.put(slot)
        except BaseException:
            self.close()
            raise
        ready = self._slots[0].ready
        if not ready["namespaces"]:
            notes.append("namespaces unavailable: network not isolated, run dirs on the host /tmp")
        self.info = SandboxInfo(
            uid_isolated=uids[0] is not None,
            uids=[u for u in uids if u is not None],
            network_isolated=bool(ready["namespaces"]),
            private_tmp=bool(ready["namespaces"]),
            hidden_paths=list(ready["hidden"]),
            interpreter=self.interpreter,
            notes=notes,
        )

    @property
    def template_pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None]

    @contextlib.contextmanager
    def slot(self) -> Iterator[Slot]:
        slot = self._free.get()
        try:
            yield slot
        except SandboxError:
            slot.restart()  # a broken template is replaced; the uid sweep at start-up cleans up
            raise
        finally:
            self._free.put(slot)

    def close(self) -> None:
        with self._lock:
            for slot in self._slots:
                slot.stop()
            self._slots = []
            for fd in self._locks:
                os.close(fd)
            self._locks = []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
