"""Isolated execution of untrusted programs (core: no stage logic).

``pool.Sandbox`` keeps one warm template process per worker slot and forks a namespaced,
rate-limited child per program (``_zygote.py``), which answers the trusted side's requests through
the in-sandbox harness (``_harness.py``) over the wire format of ``codec.py``. ``linux.py`` holds
the few Linux calls Python 3.11 lacks (also used by ``ssd.processes``).
"""

from ssd.sandbox.pool import (
    Limits,
    ProgramRun,
    Sandbox,
    SandboxError,
    SandboxFailure,
    SandboxInfo,
)

__all__ = ["Limits", "ProgramRun", "Sandbox", "SandboxError", "SandboxFailure", "SandboxInfo"]
