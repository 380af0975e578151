"""In-sandbox harness: runs one candidate program on requests from the trusted evaluator.

Runs inside the forked child *after* it has dropped privileges (see `_zygote.py`), so everything
here is untrusted-adjacent: the candidate shares this process and can patch any of it. The design
therefore never lets this process decide a verdict. It only answers requests over a private socket
(fd passed in by the template, never reachable through stdout): "run the program on this stdin and
send back what it printed" or "call the entry point with these arguments and send back the encoded
result". Expected outputs and test code stay in the evaluator, so a candidate that tampers with the
harness can at most send answers it computed itself.

Standard library only; imported by the template before it forks so the LiveCodeBench prelude
modules are already loaded in every child.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import random
import resource
import socket
import sys
import time
import traceback
from typing import Any

import codec

PRELUDE: dict[str, Any] = {}
exec(compile(codec.PRELUDE_SOURCE, "<prelude>", "exec"), PRELUDE)
PRELUDE.pop("__builtins__", None)
RECURSION_LIMIT = 50_000  # the value LiveCodeBench's prelude sets


class _Channel:
    def __init__(self, fd: int, nonce: str = "") -> None:
        self.sock = socket.socket(fileno=fd)
        self.nonce = nonce

    def recv(self) -> Any:
        header = self._exact(codec.HEADER.size)
        if header is None:
            return None
        (size,) = codec.HEADER.unpack(header)
        body = self._exact(size)
        return None if body is None else json.loads(body)

    def _exact(self, size: int) -> bytes | None:
        chunks, got = [], 0
        while got < size:
            chunk = self.sock.recv(min(size - got, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def send(self, obj: dict[str, Any]) -> None:
        obj["n"] = self.nonce
        self.sock.sendall(codec.pack_frame(obj))


def _describe(exc: BaseException) -> str:
    try:
        lines = traceback.format_exception_only(type(exc), exc)
        return "".join(lines).strip()[-2000:]
    except BaseException:  # a candidate exception whose __str__ itself fails
        return type(exc).__name__


def _error(exc: BaseException, dt: float | None = None) -> dict[str, Any]:
    reason = "memory" if isinstance(exc, MemoryError) else "runtime_error"
    return {"t": "error", "reason": reason, "detail": _describe(exc), "dt": dt}


def _fresh_globals(prelude: bool, name: str) -> dict[str, Any]:
    g: dict[str, Any] = dict(PRELUDE) if prelude else {}
    g["__name__"] = name
    g["__builtins__"] = builtins
    return g


def _exit_ok(exc: SystemExit) -> bool:
    return exc.code is None or exc.code == 0


def _install(fd: int, target: int) -> None:
    if fd != target:
        os.dup2(fd, target)
        os.close(fd)


def _ensure_std_fds() -> None:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _install(os.open(os.devnull, os.O_RDWR), fd)


def _run_stdin_test(code: Any, prelude: bool, data: str, max_out: int) -> dict[str, Any]:
    """Run the program once with `data` on a real fd 0 and capture a real fd 1.

    Real descriptors (memfds) rather than patched `sys.stdin`/`sys.stdout`, so `open(0)`,
    `os.read(0, ...)`, `sys.stdin.buffer` and `os.write(1, ...)` all behave as in a terminal run.
    The soft RLIMIT_FSIZE (max_out + 1, set by the template) makes the kernel refuse output past
    the cap; a candidate that raises it to the hard limit is still caught by the size check.
    """
    _ensure_std_fds()  # a previous test may have closed fd 0 or 1 (`open(0)` going out of scope)
    in_fd = os.memfd_create("stdin")
    raw = data.encode("utf-8")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # inputs may exceed the output cap
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(in_fd, view) :]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    os.lseek(in_fd, 0, os.SEEK_SET)
    _install(in_fd, 0)
    _install(os.memfd_create("stdout"), 1)
    new_in = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "rb", closefd=False)), encoding="utf-8", newline="\n"
    )
    new_out = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "wb", closefd=False)), encoding="utf-8", newline="\n"
    )
    sys.stdin = sys.__stdin__ = new_in
    sys.stdout = sys.__stdout__ = new_out
    g = _fresh_globals(prelude, "__main__")
    if prelude:  # `from sys import *` bound the objects of the previous test
        g["stdin"], g["stdout"] = new_in, new_out
    failure: BaseException | None = None
    start = time.perf_counter()
    try:
        exec(code, g)
    except SystemExit as exc:
        if not _exit_ok(exc):
            failure = exc
    except BaseException as exc:
        failure = exc
    dt = time.perf_counter() - start
    for stream in (new_out, sys.stdout):
        with contextlib.suppress(BaseException):  # EFBIG past the output cap is detected below
            stream.flush()
    size = os.fstat(1).st_size
    if size > max_out:
        return {"t": "error", "reason": "output_limit", "detail": f"more than {max_out} bytes"}
    if failure is not None:
        return _error(failure, dt)
    return {"t": "ok", "out": os.pread(1, size, 0).decode("utf-8", errors="replace"), "dt": dt}


def _resolve_entry(job: dict[str, Any], g: dict[str, Any]) -> Any:
    if job["entry_mode"] == "expr":
        return eval(job["entry"], g)
    # LiveCodeBench: one `Solution()` instance serves every test of the problem.
    cls = g.get("Solution")
    if isinstance(cls, type):
        return getattr(cls(), job["entry"])
    return g[job["entry"]]


def _call(fn: Any, req: dict[str, Any]) -> dict[str, Any]:
    args = codec.decode_value(req["a"])
    kwargs = codec.decode_value(req["k"])
    start = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # SystemExit too: a function has no business exiting
        return _error(exc, time.perf_counter() - start)
    dt = time.perf_counter() - start
    try:
        encoded = codec.encode_value(result)
    except BaseException as exc:
        return {"t": "error", "reason": "wrong_answer", "detail": _describe(exc), "dt": dt}
    return {"t": "ok", "r": encoded, "dt": dt}


def serve(fd: int) -> int:
    """Answer requests until the evaluator says bye or hangs up. Returns the exit status."""
    channel = _Channel(fd)
    job = channel.recv()
    if job is None:
        return 3
    channel.nonce = job["nonce"]
    sys.setrecursionlimit(RECURSION_LIMIT)
    sys.set_int_max_str_digits(0)
    random.seed()  # every child is forked from the same template: do not share its RNG state
    for name in ("exit", "quit"):  # `python -S` skips site.py, which normally defines these
        if not hasattr(builtins, name):
            setattr(builtins, name, sys.exit)
    prelude = bool(job["prelude"])
    try:
        code = compile(job["code"], "<solution>", "exec")
    except BaseException as exc:
        channel.send({"t": "error", "reason": "compile_error", "detail": _describe(exc)})
        return 0
    fn = None
    if job["kind"] == "call":
        g = _fresh_globals(prelude, "solution")
        try:
            exec(code, g)
            fn = _resolve_entry(job, g)
        except BaseException as exc:
            channel.send(_error(exc))
            return 0
    channel.send({"t": "ready"})
    while True:
        req = channel.recv()
        if req is None or req["op"] == "bye":
            return 0
        if req["op"] == "stdin":
            reply = _run_stdin_test(code, prelude, req["input"], job["max_output"])
        else:
            reply = _call(fn, req)
        channel.send(reply)
