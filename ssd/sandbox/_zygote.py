"""Template ("zygote") process: forks one sandboxed child per program, then cleans up after it.

Started by `sandbox.Slot` as `python -I -S -B _zygote.py CTL_FD CONFIG_JSON`, one per worker slot,
with the slot's dedicated uid. Starting a fresh interpreter and importing LiveCodeBench's prelude
modules costs ~40 ms; forking this already-warm process costs a few ms, which is where most of the
evaluator's throughput comes from.

The template never sees test data or candidate code: the evaluator talks to each child directly
over a socket passed in with the run request. Anything the template held would be inherited by the
next child's memory image, so keeping it ignorant keeps expected outputs out of candidates' reach.

Per run, the forked child (still root) puts itself into fresh mount, network and IPC namespaces,
mounts private tmpfs instances over the world-writable directories, applies rlimits, sets
no_new_privs, drops to the slot uid and only then serves requests via `_harness.serve`.
A whole program (a job of kind "program") gets memory files from the evaluator as stdout and
stderr; the evaluator asks the template to `wait` for the child's exit, and the exit status the
template reaps is the program's verdict.
After the run the template kills the child's process group, then any remaining process of the slot
uid (`kill(-1)` from a helper running as that uid) and reaps everything: it is a child subreaper, so
even daemons that escaped the group with setsid are reparented to it and cannot outlive the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _harness  # noqa: E402  (needs HERE on sys.path; also pre-imports the prelude modules)
import linux  # noqa: E402

sys.path.remove(HERE)

CHILD_NAMESPACES = linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWIPC
WORLD_WRITABLE_CANDIDATES = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
SOCK_FD = 3


def _blocked_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The first directory on the way to `path` (itself included) that `uid` may not search."""
    current = "/"
    for part in ["", *os.path.abspath(path).strip("/").split("/")]:
        current = os.path.join(current, part)
        st = os.stat(current)
        if st.st_uid == uid:
            bits = st.st_mode >> 6
        elif st.st_gid == gid:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        if not bits & 1:
            return current
    return None


def _expose_interpreter(uid: int, gid: int) -> list[str]:
    """Make the interpreter's files reachable for `uid` inside this template's mount namespace.

    Typical case: pyenv under /root (mode 0700). A forked child that drops to an unprivileged uid
    could then not import any module it has not imported yet. Instead of loosening host
    permissions we overmount the blocking directory with an empty tmpfs (which also hides the rest
    of it, e.g. /root's dotfiles) and bind the interpreter's prefix back, read-only.
    """
    needed = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    hidden: list[str] = []
    for _ in range(8):
        blocked = {p: a for p in needed if (a := _blocked_ancestor(p, uid, gid))}
        if not blocked:
            return hidden
        if not hidden:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        top = min(blocked.values(), key=len)
        if top == "/":
            raise RuntimeError(f"uid {uid} cannot search /")
        keep = [p for p, a in blocked.items() if a == top]
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep]
        linux.mount("tmpfs", top, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=755,size=1m")
        for p, fd in zip(keep, fds, strict=True):
            os.makedirs(p, mode=0o755, exist_ok=True)
            linux.mount(f"/proc/self/fd/{fd}", p, None, linux.MS_BIND | linux.MS_REC)
            flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
            linux.mount(None, p, None, flags)
            os.close(fd)
        hidden.append(top)
    raise RuntimeError(f"could not expose the interpreter to uid {uid}")


def _world_writable_dirs() -> list[str]:
    found = []
    for d in WORLD_WRITABLE_CANDIDATES:
        with contextlib.suppress(OSError):
            st = os.lstat(d)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH:
                found.append(d)
    return found


class Template:
    def __init__(self, ctl: socket.socket, config: dict[str, Any]) -> None:
        self.ctl = ctl
        self.uid: int | None = config["uid"]
        self.gid: int | None = config["gid"]
        self.run_root: str = config["run_root"]
        self.want_namespaces: bool = config["namespaces"]
        # Modules every child finds loaded (a grader profile's prelude imports numpy and pandas:
        # importing them per program would cost more than running it), and where they live.
        self.preload: list[str] = config.get("preload", [])
        self.module_paths: list[str] = config.get("module_paths", [])
        self.namespaces = False
        # Without root, namespaces need a user namespace of their own (mapping only our uid).
        self.userns = self.uid is None and os.geteuid() != 0
        self.ns_flags = CHILD_NAMESPACES | (linux.CLONE_NEWUSER if self.userns else 0)
        self.tmp_dirs = _world_writable_dirs()
        self.hidden: list[str] = []
        self.children_file = f"/proc/{os.getpid()}/task/{os.getpid()}/children"

    # -- start-up ---------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        info: dict[str, Any] = {"op": "ready", "pid": os.getpid(), "uid": self.uid}
        try:
            sys.path.extend(self.module_paths)
            for name in self.preload:
                importlib.import_module(name)
            if self.uid is not None:
                self.hidden = _expose_interpreter(self.uid, self.gid)
            if self.want_namespaces:
                self.namespaces = self._probe_namespaces()
            if self.uid is not None:
                self._sweep_uid()
                if not self._probe_uid_can_import():
                    raise RuntimeError(f"uid {self.uid} cannot read the interpreter's stdlib")
        except Exception as exc:
            info["error"] = f"{type(exc).__name__}: {exc}"
        info.update(namespaces=self.namespaces, hidden=self.hidden, tmp_dirs=self.tmp_dirs)
        return info

    def _fork_probe(self, body: Any) -> bool:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                body()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0

    def _probe_namespaces(self) -> bool:
        return self._fork_probe(lambda: self._enter_namespaces(1 << 20))

    def _enter_namespaces(self, tmpfs_bytes: int) -> None:
        uid, gid = os.getuid(), os.getgid()
        linux.unshare(self.ns_flags)
        if self.userns:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"{gid} {gid} 1")
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        opts = f"size={tmpfs_bytes},nr_inodes=4096,mode=1777"
        for d in self.tmp_dirs:
            linux.mount("tmpfs", d, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, opts)

    def _probe_uid_can_import(self) -> bool:
        def body() -> None:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
            os.listdir(os.path.dirname(os.__file__))  # lazy imports must find the stdlib

        return self._fork_probe(body)

    # -- one run ----------------------------------------------------------------------------
    def fork_child(self, sock_fd: int, limits: dict[str, Any], output_fds: list[int]
                   ) -> tuple[int, str | None]:
        """output_fds: the child's stdout and stderr (a whole program's), or none (/dev/null)."""
        host_dir = None
        if not self.namespaces:
            host_dir = tempfile.mkdtemp(prefix="ssd-run-", dir=self.run_root)
            if self.uid is not None:
                os.chown(host_dir, self.uid, self.gid)
        pid = os.fork()
        if pid == 0:
            code = 125
            try:
                self._become_sandboxed(sock_fd, limits, host_dir, output_fds)
                code = _harness.serve(SOCK_FD)
            finally:
                os._exit(code)
        return pid, host_dir

    def _become_sandboxed(self, sock_fd: int, limits: dict[str, Any], host_dir: str | None,
                          output_fds: list[int]) -> None:
        os.setsid()
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        run_dir = host_dir
        if self.namespaces:
            self._enter_namespaces(limits["tmpfs_bytes"])
            run_dir = os.path.join(self.tmp_dirs[0] if self.tmp_dirs else "/tmp", "sandbox")
            os.mkdir(run_dir, 0o700)
            if self.uid is not None:
                os.chown(run_dir, self.uid, self.gid)
        assert run_dir is not None
        for res, soft, hard in (
            (resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1),
            (resource.RLIMIT_AS, limits["as_bytes"], limits["as_bytes"]),
            (resource.RLIMIT_FSIZE, limits["fsize_bytes"], limits["fsize_hard_bytes"]),
            (resource.RLIMIT_NOFILE, limits["nofile"], limits["nofile"]),
            (resource.RLIMIT_NPROC, limits["nproc"], limits["nproc"]),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            resource.setrlimit(res, (soft, hard))
        devnull = os.open(os.devnull, os.O_RDWR)
        # fds 0-3 become stdin, stdout, stderr and the socket. The received fds may sit on any of
        # those numbers, so each is first copied above them all (F_DUPFD: the lowest free >= 16).
        wanted = [devnull, *(output_fds or [devnull, devnull]), sock_fd]
        parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in wanted]
        for target, fd in enumerate(parked):
            os.dup2(fd, target)
        os.closerange(SOCK_FD + 1, 1 << 16)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries cannot regain privileges
        if self.userns and self.namespaces:
            linux.drop_capabilities()
        if self.uid is not None:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        os.chdir(run_dir)
        os.umask(0o077)
        os.environ.clear()
        os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=run_dir, TMPDIR=run_dir)
        os.environ.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)

    def reap(self, pid: int, host_dir: str | None) -> dict[str, Any]:
        # WNOWAIT keeps the child's pid (and so its process-group id) reserved until after
        # killpg: reaping first would let another slot's new child reuse the pid as its pgid.
        exited_first = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        leaked = self._kill_descendants()
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)
        return {"op": "reaped", "status": status, "exited_first": exited_first, "leaked": leaked}

    def wait(self, pid: int, timeout_s: float) -> bool:
        """Whether the child exits within ``timeout_s`` (it stays unreaped for `reap`)."""
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            return bool(poller.poll(max(0, int(timeout_s * 1000))))
        finally:
            os.close(pidfd)

    def _children(self) -> list[int]:
        try:
            with open(self.children_file) as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:  # kernel without CONFIG_PROC_CHILDREN: scan /proc
            me, found = os.getpid(), []
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    with (
                        contextlib.suppress(OSError, IndexError, ValueError),
                        open(f"/proc/{entry}/stat") as f,
                    ):
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                            found.append(int(entry))
            return found

    def _kill_descendants(self, timeout: float = 5.0) -> int:
        """Kill and reap everything the run left behind. Returns how many could not be reaped.

        As a subreaper, this process inherits every orphaned descendant, so "no children left"
        means "no descendants left". Usually there are none and this costs one /proc read.
        """
        deadline = time.monotonic() + timeout
        while kids := self._children():
            if self.uid is not None:
                self._sweep_uid()  # one kill(-1) catches the whole tree, even mid-fork-bomb
            else:
                for kid in kids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(kid, signal.SIGKILL)
            self._reap_zombies()
            if time.monotonic() > deadline:
                return len(self._children())
            if self._children():
                time.sleep(0.002)
                self._reap_zombies()
        return 0

    def _reap_zombies(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _sweep_uid(self) -> None:
        """SIGKILL every process of the slot uid, from a helper that runs as that uid.

        kill(-1) from an unprivileged process reaches exactly the processes of its own uid; the
        uid is dedicated to this slot (allocated under a lock), so nothing else is hit.
        """
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(self.gid, self.gid, self.gid)
                os.setresuid(self.uid, self.uid, self.uid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    # -- main loop ----------------------------------------------------------------------------
    def serve(self) -> None:
        self.ctl.send(json.dumps(self.start()).encode())
        running: tuple[int, str | None] | None = None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.ctl, 1 << 16, 4)
            except OSError:
                data, fds = b"", []
            if not data:  # evaluator gone: leave nothing behind
                if running is not None:
                    self.reap(*running)
                return
            msg = json.loads(data)
            if msg["op"] == "run":
                try:
                    running = self.fork_child(fds[0], msg["limits"], fds[1:3])
                    reply: dict[str, Any] = {"op": "started", "pid": running[0]}
                except Exception as exc:
                    reply = {"op": "error", "error": f"{type(exc).__name__}: {exc}"}
                for fd in fds:
                    os.close(fd)
                self.ctl.send(json.dumps(reply).encode())
            elif msg["op"] == "wait":
                exited = running is not None and self.wait(running[0], msg["timeout_s"])
                self.ctl.send(json.dumps({"op": "waited", "exited": exited}).encode())
            elif msg["op"] == "reap":
                reply = {"op": "reaped", "status": None, "leaked": 0}
                if running is not None:
                    reply = self.reap(*running)
                    running = None
                self.ctl.send(json.dumps(reply).encode())
            elif msg["op"] == "quit":
                if running is not None:
                    self.reap(*running)
                return


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    Template(ctl, json.loads(sys.argv[2])).serve()


if __name__ == "__main__":
    main()
