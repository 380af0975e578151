"""A lease lock file: one holder at a time, across processes and machines sharing a filesystem.

``StageLock(path)`` creates ``path`` exclusively (``O_CREAT | O_EXCL``, atomic on local disks,
NFSv3+, Lustre, GPFS) and writes its owner (host, pid, process start time, a random token) into
it; a heartbeat thread refreshes the file's modification time while the lock is held. Another
process waits while the lock is live, and breaks it when it is stale:

* the owner ran on this host and its process is gone (killed, crashed, a reused pid), seen at
  once, so a killed job's rerun on the same machine never waits;
* or the heartbeat stopped for ``stale_after_s`` (the owner's machine died or lost the
  filesystem), which assumes the machines' clocks agree to well within ``stale_after_s``.

Breaking goes through a second exclusive file (``<path>.break``) and re-reads the owner inside
it, so two waiters cannot both break the lock, nor break a lock that a third process has just
taken. POSIX ``fcntl`` locks would release themselves on death too, but not on every shared
filesystem (Lustre without ``-o flock``, some NFS set-ups), which is why this is a lease.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

# A breaker file lives for microseconds; one this old belongs to a process that died inside.
BREAKER_STALE_S = 60.0


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it is not running.

    Together with the pid this names one process: a pid reused later has another start time. A
    zombie (killed, not yet reaped by its parent) counts as not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]


def _read_owner(path: Path) -> tuple[dict[str, Any] | None, float | None]:
    """The owner record and the file's modification time; (None, None) if there is no file, and
    (None, mtime) while its creator has not finished writing it."""
    try:
        mtime = path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return None, mtime
    return (owner if isinstance(owner, dict) else None), mtime


def stale_reason(owner: dict[str, Any] | None, mtime: float, now: float, host: str,
                 stale_after_s: float) -> str | None:
    """Why a lock held by ``owner`` (its file last refreshed at ``mtime``) is stale, or None.

    Pure apart from the process lookup for an owner on ``host``."""
    if owner is not None and owner.get("host") == host:
        start = process_start(int(owner.get("pid", -1)))
        if start != owner.get("start"):
            return f"its owner (pid {owner.get('pid')} on {host}) is no longer running"
    if now - mtime > stale_after_s:
        return f"no heartbeat for {now - mtime:.0f} s (> {stale_after_s:g} s)"
    return None


def _create_exclusive(path: Path, text: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return True


class StageLock:
    """``with StageLock(path): ...`` runs the body while holding the lock file ``path``."""

    def __init__(self, path: Path, *, stale_after_s: float = 600.0, heartbeat_s: float = 30.0,
                 poll_s: float = 2.0, on_wait: Callable[[dict[str, Any] | None], None] | None
                 = None) -> None:
        if not 0 < heartbeat_s < stale_after_s:
            raise ValueError(f"heartbeat_s={heartbeat_s} must be > 0 and < stale_after_s="
                             f"{stale_after_s}, or a live lock would look stale")
        self.path = path
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.on_wait = on_wait
        self.host = socket.gethostname()
        self.owner = {"host": self.host, "pid": os.getpid(), "start": process_start(os.getpid()),
                      "token": uuid.uuid4().hex, "since": time.time()}
        self.broken: list[str] = []  # why each stale lock this one replaced was stale
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> StageLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.owner)
        waited = False
        while not _create_exclusive(self.path, text):
            owner, mtime = _read_owner(self.path)
            if mtime is None:
                continue  # released between our create and our read: try again now
            reason = stale_reason(owner, mtime, time.time(), self.host, self.stale_after_s)
            if reason is not None:
                self._break(owner, reason)
                continue
            if not waited and self.on_wait is not None:
                self.on_wait(owner)
            waited = True
            time.sleep(self.poll_s)
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="stage-lock-heartbeat",
                                           daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.holds():
            self.path.unlink(missing_ok=True)

    def holds(self) -> bool:
        owner, _ = _read_owner(self.path)
        return owner is not None and owner.get("token") == self.owner["token"]

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if self.holds():
                os.utime(self.path)

    def _break(self, owner: dict[str, Any] | None, reason: str) -> None:
        """Remove the stale lock of ``owner``, unless it changed hands meanwhile."""
        breaker = self.path.with_name(self.path.name + ".break")
        if not _create_exclusive(breaker, json.dumps(self.owner)):
            _, made = _read_owner(breaker)
            if made is not None and time.time() - made > BREAKER_STALE_S:
                breaker.unlink(missing_ok=True)
            time.sleep(min(self.poll_s, 0.2))
            return
        try:
            now_owner, mtime = _read_owner(self.path)
            same = (now_owner or {}).get("token") == (owner or {}).get("token")
            if mtime is not None and same and stale_reason(
                    now_owner, mtime, time.time(), self.host, self.stale_after_s) is not None:
                self.path.unlink(missing_ok=True)
                self.broken.append(reason)
        finally:
            breaker.unlink(missing_ok=True)
