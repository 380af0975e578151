"""Process helpers shared by the stages (core): children that die with whoever started them."""

from __future__ import annotations

import os
import signal

from ssd.sandbox.linux import PR_SET_PDEATHSIG, prctl


def die_with_parent(parent: int | None = None, who: str = "ssd") -> None:
    """Have the kernel SIGKILL this process as soon as its parent dies.

    torchrun starts each rank in a session of its own, so a SIGKILL to the job's process group
    (or to the launcher alone) would leave the ranks training on, orphaned, beside the rerun that
    resumes the same run directory. Each link (train.py -> torchrun -> rank) dies with the one
    above it. A parent that died before this call has already handed the process over to
    another: ``parent`` is the pid it must still be, or, unknown, it must not be init.
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    orphaned = os.getppid() != parent if parent is not None else os.getppid() == 1
    if orphaned:
        os.write(2, f"{who}: the launching process is gone; not starting\n".encode())
        os._exit(1)
