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

A job of kind "program" is a whole program in Python or bash (``run_program``): the harness
hangs up first and the program runs to its end; the template reports its exit status.

A job's ``io`` says how the program meets its input and output. "real" (the project's own
semantics): real file descriptors 0 and 1, the module run as ``__main__``. "lcb" and "ml_ssd"
reproduce the two reference graders' runners (the grader profiles of
``ssd/evaluation/graders.py``): the program's top-level statements become the body of a function
(imports stay at module level), ``sys.stdin`` is their mock object and ``sys.stdout`` a StringIO,
with each reference's differences (iteration, ``open``, ``exit``; see ../shared/graders.md).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import os
import random
import resource
import signal
import socket
import sys
import time
import traceback
from typing import Any
from unittest import mock

import codec

PRELUDE: dict[str, Any] = {}
exec(compile(codec.PRELUDE_SOURCE, "<prelude>", "exec"), PRELUDE)
PRELUDE.pop("__builtins__", None)
RECURSION_LIMIT = 50_000  # the value LiveCodeBench's prelude sets
# The names the paper's released evaluator puts in scope before every program: named imports
# only, numpy and pandas among them (the sandbox template preloads those for that profile).
ML_SSD_PRELUDE_SOURCE = """\
from itertools import (accumulate, chain, combinations, count, cycle, groupby, islice,
                       permutations, product, repeat, zip_longest)
from copy import deepcopy
from string import ascii_lowercase
from math import ceil, comb, floor, gcd, inf, isqrt, log, log2, log10, prod, sqrt
from collections import Counter, OrderedDict, defaultdict, deque
from bisect import bisect, bisect_left, bisect_right, insort
from heapq import heapify, heappop, heappush, merge
from functools import cache, lru_cache, partial, reduce
from random import randrange, shuffle
from operator import iand, itemgetter, sub
from re import search as re_search
from os.path import commonprefix
from typing import (Any, Callable, Dict, Generator, Iterable, Iterator, List, Optional, Set,
                    Tuple, Union)
import bisect, collections, copy, functools, heapq, itertools, math, operator, random, re, string
import sys
import numpy as np
import pandas as pd
"""
WRAPPED = "wrapped_function"  # the reference runners' name for a program's body


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


def _fresh_globals(prelude: bool | str, name: str | None) -> dict[str, Any]:
    """prelude: True for LiveCodeBench's, "ml_ssd" for the paper evaluator's, False for none.
    name None leaves ``__name__`` unset (it then resolves to the builtins module's)."""
    g: dict[str, Any] = {}
    if prelude == "ml_ssd":
        exec(compile(ML_SSD_PRELUDE_SOURCE, "<prelude>", "exec"), g)
    elif prelude:
        g.update(PRELUDE)
    if name is not None:
        g["__name__"] = name
    g["__builtins__"] = builtins
    return g


def _as_wrapped_function(source: str) -> tuple[Any, bool]:
    """The reference runners' layout of a stdin program, compiled: a last top-level
    ``if __name__ == '__main__':`` is replaced by its body, top-level imports stay at module
    level, and every other statement becomes the body of ``wrapped_function``, which each test
    calls. So the program's module-level names are that function's locals. Also whether the
    runners would instantiate ``Solution`` after loading it: they do when the rewritten source
    contains "class Solution", and a class defined inside the function is not there to call."""
    body = ast.parse(source).body
    if body and isinstance(body[-1], ast.If) and \
            ast.unparse(body[-1].test).strip() == "__name__ == '__main__'":
        body = body[:-1] + body[-1].body
    imports = [s for s in body if isinstance(s, ast.Import | ast.ImportFrom)]
    rest = [s for s in body if not isinstance(s, ast.Import | ast.ImportFrom)] or [ast.Pass()]
    function = ast.FunctionDef(name=WRAPPED, args=ast.arguments(
        posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]), body=rest,
        decorator_list=[], returns=None)
    module = ast.fix_missing_locations(ast.Module(body=[*imports, function], type_ignores=[]))
    return compile(module, "<solution>", "exec"), "class Solution" in ast.unparse(module)


def _load_wrapped(code: Any, instantiates_solution: bool, prelude: bool | str) -> dict[str, Any]:
    module = _fresh_globals(prelude, "tmp_sol")
    exec(code, module)
    if instantiates_solution:
        module["Solution"]()
    return module


class _MockStdin:
    """``sys.stdin`` as LiveCodeBench patches it: ``read`` and ``readlines`` see the whole input,
    ``readline`` hands out its "\\n"-separated pieces without their newline and raises
    StopIteration past the last, ``buffer.readline`` always returns the first line, and there is
    no ``__iter__`` (``for line in sys.stdin`` is a TypeError)."""

    def __init__(self, data: str) -> None:
        self._data = data
        self._pieces = iter(data.split("\n"))
        self._stream = io.StringIO(data)
        self.buffer = _MockStdinBuffer(data.encode("utf-8"))

    def read(self, *args: Any) -> str:
        return self._data

    def readline(self, *args: Any) -> str:
        return next(self._pieces)

    def readlines(self, *args: Any) -> list[str]:
        return self._data.split("\n")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _IterableMockStdin(_MockStdin):
    """The paper evaluator's variant: iterating yields the input's lines (with newlines)."""

    def __iter__(self) -> Any:
        return iter(self._stream)

    def __next__(self) -> str:
        return next(self._stream)


class _MockStdinBuffer:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, *args: Any) -> bytes:
        return self._data

    def readline(self, *args: Any) -> bytes:
        return self._data.split(b"\n")[0] + b"\n"


class _Captured(io.StringIO):
    """The reference runners' captured stdout: a StringIO whose close does nothing (and which,
    unlike a real stdout, has no ``buffer``)."""

    def close(self) -> None:
        pass


def _run_wrapped_test(module: dict[str, Any], io_mode: str, data: str, max_out: int
                      ) -> dict[str, Any]:
    """One test of a wrapped program under a reference's stdin mock: "lcb" leaves ``open``
    alone (its prelude bound the real one, which reads the sandbox's empty fd 0), "ml_ssd"
    patches ``builtins.open`` to read the test input. SystemExit ends the program normally."""
    stdin = _MockStdin(data) if io_mode == "lcb" else _IterableMockStdin(data)
    out = _Captured()
    saved = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = stdin, out
    opener = mock.patch("builtins.open", mock.mock_open(read_data=data)) \
        if io_mode == "ml_ssd" else contextlib.nullcontext()
    failure: BaseException | None = None
    start = time.perf_counter()
    try:
        with opener:
            module[WRAPPED]()
    except SystemExit:
        pass
    except BaseException as exc:
        failure = exc
    finally:
        dt = time.perf_counter() - start
        sys.stdin, sys.stdout = saved
    text = out.getvalue()
    if len(text.encode("utf-8", errors="replace")) > max_out:
        return {"t": "error", "reason": "output_limit", "detail": f"more than {max_out} bytes"}
    if failure is not None:
        return _error(failure, dt)
    return {"t": "ok", "out": text, "dt": dt}


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
    # The reference runners decide "a Solution class" by searching the source text for these.
    markers = job.get("solution_markers")
    if markers is not None:
        if any(marker in job["code"] for marker in markers):
            return getattr(g["Solution"](), job["entry"])
        return g[job["entry"]]
    # LiveCodeBench: one `Solution()` instance serves every test of the problem.
    cls = g.get("Solution")
    if isinstance(cls, type):
        return getattr(cls(), job["entry"])
    return g[job["entry"]]


def _load_call_entry(job: dict[str, Any], code: Any, prelude: bool | str) -> Any:
    g = _fresh_globals(prelude, job.get("module_name", "solution"))
    exec(code, g)
    return _resolve_entry(job, g)


def _call(fn: Any, req: dict[str, Any]) -> dict[str, Any]:
    """``fn`` is the entry point, or a function loading it afresh (``fresh_module``)."""
    args = codec.decode_value(req["a"])
    kwargs = codec.decode_value(req["k"])
    start = time.perf_counter()
    try:
        entry = fn() if req.get("fresh") else fn
        result = entry(*args, **kwargs)
    except BaseException as exc:  # SystemExit too: a function has no business exiting
        return _error(exc, time.perf_counter() - start)
    dt = time.perf_counter() - start
    try:
        encoded = codec.encode_value(result)
    except BaseException as exc:
        return {"t": "error", "reason": "wrong_answer", "detail": _describe(exc), "dt": dt}
    return {"t": "ok", "r": encoded, "dt": dt}


def _set_exits(io_mode: str) -> None:
    """exit/quit as each runner leaves them: LiveCodeBench sets ``quit = None``, the paper
    evaluator sets both to None (calling them is then a TypeError)."""
    for name in ("exit", "quit"):
        if io_mode == "ml_ssd" or (io_mode == "lcb" and name == "quit"):
            setattr(builtins, name, None)
        elif not hasattr(builtins, name):  # `python -S` skips site.py, which defines these
            setattr(builtins, name, sys.exit)


def _exit_status(exc: SystemExit) -> int:
    """The status ``python program.py`` exits with on this SystemExit."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run_program(language: str, code: str) -> int:
    """Run a whole program as its interpreter would from a file; returns its exit status.

    bash replaces this process (exec), so the status the template reaps is bash's own. Python
    runs here, in the already-warm interpreter, as ``__main__`` with the interpreter's defaults
    (no prelude, recursion limit 1,000): an uncaught exception prints its traceback and exits
    with 1. A Python program passes only by running to its end: SystemExit, whatever its code,
    fails it (status 1, or its own nonzero code), as in CruxEval's harness, where the program is
    ``exec``'d and any exit is an exception; otherwise an answer such as
    ``__import__('sys').exit(0)`` would end the program before its assertion and pass. Unlike
    ``python program.py``, threads still running when the module ends are not waited for.
    """
    if language == "bash":
        with open("program.sh", "w", encoding="utf-8") as f:
            f.write(code)
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: give bash and
        # its commands the defaults a shell has (`yes | head -1` ends by SIGPIPE).
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execvp("bash", ["bash", "program.sh"])
    _set_exits("real")
    try:
        compiled = compile(code, "program.py", "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: a null byte in the source
        sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        sys.stderr.flush()
        return 1
    try:
        exec(compiled, _fresh_globals(False, "__main__"))
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc) or 1
        print(f"SystemExit({exc.code!r}) before the program's end", file=sys.stderr)
    except BaseException as exc:  # the traceback without this function's frame, as python's
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        traceback.print_exception(type(exc), exc, tb)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # EFBIG past the output cap: seen by its size
            stream.flush()
    return status


def serve(fd: int) -> int:
    """Answer requests until the evaluator says bye or hangs up. Returns the exit status."""
    channel = _Channel(fd)
    job = channel.recv()
    if job is None:
        return 3
    channel.nonce = job["nonce"]
    if job["kind"] == "program":
        channel.sock.close()  # a whole program's verdict is its exit status, seen by the template
        return run_program(job["language"], job["code"])
    sys.setrecursionlimit(job.get("recursion_limit", RECURSION_LIMIT))
    # The program's int->str digit limit (0: none); results cross the wire without decimal
    # conversion of big ints (codec), so the limit only binds what the program itself converts.
    sys.set_int_max_str_digits(job.get("int_max_str_digits", 0))
    random.seed()  # every child is forked from the same template: do not share its RNG state
    io_mode = job.get("io", "real")
    _set_exits(io_mode)
    prelude = job["prelude"]
    wrapped = job["kind"] == "stdin" and io_mode != "real"
    instantiates_solution = False
    try:
        if wrapped:
            code, instantiates_solution = _as_wrapped_function(job["code"])
        else:
            code = compile(job["code"], "<solution>", "exec")
    except BaseException as exc:
        channel.send({"t": "error", "reason": "compile_error", "detail": _describe(exc)})
        return 0
    fn: Any = None
    module: dict[str, Any] = {}
    try:
        if job["kind"] == "call" and job.get("fresh_module"):
            fn = lambda: _load_call_entry(job, code, prelude)  # noqa: E731  (re-run per test)
        elif job["kind"] == "call":
            fn = _load_call_entry(job, code, prelude)
        elif wrapped and not job.get("fresh_module"):
            module = _load_wrapped(code, instantiates_solution, prelude)
    except BaseException as exc:
        channel.send(_error(exc))
        return 0
    channel.send({"t": "ready"})
    while True:
        req = channel.recv()
        if req is None or req["op"] == "bye":
            return 0
        if req["op"] == "stdin" and wrapped:
            reply = _run_fresh_wrapped_test(code, instantiates_solution, prelude, io_mode,
                                            req["input"], job["max_output"]) \
                if job.get("fresh_module") else \
                _run_wrapped_test(module, io_mode, req["input"], job["max_output"])
        elif req["op"] == "stdin":
            reply = _run_stdin_test(code, prelude, req["input"], job["max_output"])
        else:
            reply = _call(fn, {**req, "fresh": job.get("fresh_module", False)})
        channel.send(reply)


def _run_fresh_wrapped_test(code: Any, instantiates_solution: bool, prelude: bool | str,
                            io_mode: str, data: str, max_out: int) -> dict[str, Any]:
    """The paper evaluator compiles the program again for every test."""
    try:
        module = _load_wrapped(code, instantiates_solution, prelude)
    except Exception as exc:
        return _error(exc)
    return _run_wrapped_test(module, io_mode, data, max_out)
