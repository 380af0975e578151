"""A build-once cache of model folders: built under a lock into a temporary folder, then renamed.

Several processes (Hydra multirun jobs, test workers, torchrun ranks) may ask for the same model
at the same time; exactly one builds it and the others wait, and a build killed half-way leaves
only a temporary folder that the next build removes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_CACHE_DIR = Path(os.environ.get("SSD_CACHE_DIR", Path.home() / ".cache" / "ssd"))
COMPLETE_MARKER = ".complete"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (released by the kernel if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_build(folder: Path, build: Callable[[Path], None]) -> Path:
    """Return ``folder``, calling ``build(tmp_folder)`` first if it is not complete yet."""
    if (folder / COMPLETE_MARKER).exists():
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):
        if (folder / COMPLETE_MARKER).exists():
            return folder
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        partial.mkdir(parents=True)
        build(partial)
        (partial / COMPLETE_MARKER).touch()
        partial.rename(folder)
    return folder
