"""Stage identity (core): the one rule every stage script and every driver uses.

A stage's **identity** is the hash of

* the stage's name and format version (a change in what the stage writes starts new runs),
* every config value that changes its output (resolved), and
* the content digests of its input files: the prompt pool, the training set, the benchmark, the
  model's weights. Never a path: a file edited in place is a new input, and the same content
  under another path is the same input.

The run directory is named by the identity, so two configs never share one. A stage is
**complete** when its completion record (``run.json``, ``metrics.json``, ``filter.json``) says
``status: complete`` for the same identity (and any further fields the stage names, such as the
pass@k ks its metrics were computed for). Each stage package builds a ``StagePlan`` from its
config; the script checks ``plan.complete()`` before doing anything, and the drivers ask the same
plan, so "already complete" means the same thing everywhere.

Digests of large files (a GPU cluster's training set, a 60 GB checkpoint) are cached under
``$SSD_CACHE_DIR/digests`` keyed by the file's path, size, inode and modification time, so a
sweep hashes a checkpoint once, and a file rewritten since is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssd.config import ConfigError, get_value
from ssd.records import write_json_atomic

COMPLETE = "complete"
_BLOCK = 1 << 20


def _digest_cache_dir() -> Path:
    from ssd.models.cache import DEFAULT_CACHE_DIR

    return DEFAULT_CACHE_DIR / "digests"


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (hex), cached by (path, size, inode, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(
        f"{path}\0{stat.st_size}\0{stat.st_ino}\0{stat.st_mtime_ns}".encode()).hexdigest()
    cached = _digest_cache_dir() / key[:2] / key
    try:
        return cached.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    value = digest.hexdigest()
    try:  # a cache that cannot be written only costs a re-hash next time
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(value + "\n")
        os.replace(tmp, cached)
    except OSError:
        pass
    return value


def folder_digest(folder: str | Path) -> str:
    """sha256 over a folder's regular files (relative name and content digest each), hidden files
    (build markers, caches) left out."""
    root = Path(folder).resolve()
    entries = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    blob = json.dumps([(name, file_digest(root / name)) for name in entries])
    return hashlib.sha256(blob.encode()).hexdigest()


def model_identity(path: str) -> str:
    """What a ``model.path`` names, as content: a builtin's versioned build, a local folder's
    files, or a hub id as given (its content is the hub's to keep)."""
    from ssd.models import BUILTIN_PREFIX, builtin_build_name

    if path.startswith(BUILTIN_PREFIX):
        return f"builtin:{builtin_build_name(path)}"
    local = Path(path).expanduser()
    if local.is_dir():
        return f"sha256:{folder_digest(local)}"
    return f"hub:{path}"


def input_identity(path: str | None) -> str | None:
    """A data input as content: a local file's digest; a hub reference or null as given."""
    if path is None:
        return None
    local = Path(path).expanduser()
    return f"sha256:{file_digest(local)}" if local.is_file() else str(path)


def config_values(cfg: DictConfig, keys: Sequence[str]) -> dict[str, Any]:
    """The resolved values under ``keys`` (a group becomes a plain dict)."""
    values = {}
    for key in keys:
        value = get_value(cfg, key)
        values[key] = (OmegaConf.to_container(value, resolve=True)
                       if isinstance(value, DictConfig) else value)
    return values


def stage_identity(stage: str, version: int, values: Mapping[str, Any],
                   inputs: Mapping[str, str | None]) -> str:
    """The identity rule: a short hash of the stage, its format version, the config values that
    decide its output and the content identities of its inputs."""
    payload = {"stage": stage, "version": version, "values": values, "inputs": inputs}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class StagePlan:
    """Where a stage run writes, under which identity, and what says it is complete."""

    stage: str
    run_dir: Path
    identity: str
    record_file: str                       # the completion record, inside run_dir
    expect: Mapping[str, Any] = field(default_factory=dict)  # further fields that must match

    @property
    def record_path(self) -> Path:
        return self.run_dir / self.record_file

    def record(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def complete(self) -> bool:
        record = self.record()
        return (record is not None and record.get("status") == COMPLETE
                and record.get("identity") == self.identity
                and all(record.get(key) == value for key, value in self.expect.items()))

    def write_record(self, payload: Mapping[str, Any]) -> None:
        """Mark the run complete (atomically): the payload, this identity and the expected
        fields."""
        write_json_atomic(self.record_path, {**payload, "status": COMPLETE,
                                             "identity": self.identity, **self.expect})

    def claim(self, key: str = "output_dir") -> None:
        """Mark ``run_dir`` as holding this identity; refuse a folder that holds another run.

        Resuming appends to what a folder holds, so a folder written under a different config
        must never be resumed into (its samples or checkpoints would mix with this run's)."""
        claim_run_dir(self.run_dir, self.identity, key)


def claim_run_dir(out: Path, identity: str, key: str = "output_dir") -> None:
    marker = out / "identity.json"
    if marker.exists():
        found = json.loads(marker.read_text()).get("identity")
        if found != identity:
            raise ConfigError(f"{key}={out}: holds a run with a different config (identity "
                              f"{found}, this one {identity}); choose another {key} or delete it")
        return
    out.mkdir(parents=True, exist_ok=True)
    # Atomic (several nodes of one run may claim the same shared folder at once).
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"identity": identity}) + "\n")
    os.replace(tmp, marker)
