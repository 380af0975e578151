"""Start-up validation of composed configs, with one-line errors that name the key and the fix.

Hydra composes; this module checks values before anything expensive starts (an engine, a model
download), so `python generate.py decoding.T=0` fails in a second with

    error: decoding.T=0: must be > 0 (temperature; 1.0 samples from the model as is)

Each group has one check function; entry scripts call the ones for the groups they compose.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

REPO_ROOT = Path(__file__).resolve().parents[1]

if not OmegaConf.has_resolver("ssd.root"):
    # ${ssd.root:} in configs: the repository root, so shipped data resolves from any cwd.
    OmegaConf.register_new_resolver("ssd.root", lambda: str(REPO_ROOT))


class ConfigError(ValueError):
    """A config value is out of range; the message is one line naming the key."""


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn expected user mistakes into one line on stderr and exit status 2, not a traceback."""
    try:
        yield
    except (ConfigError, OmegaConfBaseException, *extra) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{key}: cannot be resolved ({error.__class__.__name__}: "
                          f"{str(error).splitlines()[0]})") from None


def _check(cfg: DictConfig, key: str, ok: Callable[[Any], bool], accepted: str) -> Any:
    value = _get(cfg, key)
    try:
        good = ok(value)
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"{key}={value}: must be {accepted}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_decoding(cfg: DictConfig) -> None:
    _check(cfg, "decoding.T", lambda v: _is_number(v) and v > 0,
           "> 0 (temperature; 1.0 samples from the model as is)")
    _check(cfg, "decoding.seed", _is_int, "an integer")
    _check(cfg, "decoding.max_tokens", lambda v: v is None or (_is_int(v) and v >= 1),
           "an integer >= 1, or null for up to the context limit")
    _check(cfg, "decoding.n", lambda v: _is_int(v) and v >= 1,
           "an integer >= 1 (samples per prompt)")


def check_truncation(cfg: DictConfig) -> None:
    _check(cfg, "truncation.top_k", lambda v: v is None or (_is_int(v) and v >= 0),
           "an integer >= 0 (0 or null disables top-k)")
    _check(cfg, "truncation.top_p", lambda v: _is_number(v) and 0 < v <= 1,
           "in (0, 1] (1.0 disables top-p)")
    _check(cfg, "truncation.min_p", lambda v: v is None or (_is_number(v) and 0 <= v < 1),
           "in [0, 1) (0 disables min-p)")


def check_model(cfg: DictConfig) -> None:
    _check(cfg, "model.path", lambda v: isinstance(v, str) and v.strip() != "",
           "a builtin (builtin:tiny, builtin:smollm2-135m), a local HF folder or a hub id")
    _check(cfg, "model.dtype", lambda v: v in {"auto", "float32", "bfloat16", "float16"},
           "one of auto, float32, bfloat16, float16")
    _check(cfg, "model.thinking", lambda v: isinstance(v, bool), "true or false")


def check_data(cfg: DictConfig) -> None:
    path = _check(cfg, "data.path", lambda v: isinstance(v, str) and v != "",
                  "a .json/.jsonl file or hub:<dataset id>")
    if not path.startswith("hub:"):
        _check(cfg, "data.path", lambda v: Path(v).is_file(),
               "an existing .json/.jsonl file (or hub:<dataset id>)")
    _check(cfg, "data.field", lambda v: isinstance(v, str) and v != "",
           "the name of the problem-statement field")
    _check(cfg, "data.limit", lambda v: v is None or (_is_int(v) and v >= 1),
           "an integer >= 1, or null for the whole pool")


def check_engine(cfg: DictConfig) -> None:
    _check(cfg, "engine.tensor_parallel_size", lambda v: _is_int(v) and v >= 1,
           "an integer >= 1")
    _check(cfg, "engine.gpu_memory_utilization", lambda v: _is_number(v) and 0 < v <= 1,
           "in (0, 1]")
    _check(cfg, "engine.max_model_len", lambda v: v is None or (_is_int(v) and v >= 16),
           "an integer >= 16, or null for the model's own")
    _check(cfg, "engine.max_num_seqs", lambda v: v is None or (_is_int(v) and v >= 1),
           "an integer >= 1, or null")
    _check(cfg, "engine.cpu_kv_cache_gib", lambda v: _is_number(v) and v > 0, "> 0 (GiB)")


def check_filter(cfg: DictConfig) -> None:
    for key in ("filter.drop_empty", "filter.drop_single_line"):
        _check(cfg, key, lambda v: isinstance(v, bool), "true or false")
    _check(cfg, "filter.drop_shortest_fraction", lambda v: _is_number(v) and 0 <= v < 1,
           "in [0, 1) (0 keeps all lengths)")


def check_shard(cfg: DictConfig) -> None:
    count = _check(cfg, "shard.count", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    _check(cfg, "shard.index", lambda v: _is_int(v) and 0 <= v < count,
           f"an integer in [0, shard.count={count})")


def config_hash(cfg: DictConfig, keys: list[str]) -> str:
    """A short content hash of the resolved values under ``keys`` (the stage's identity)."""
    payload = {key: OmegaConf.to_container(_get(cfg, key), resolve=True)
               if isinstance(_get(cfg, key), DictConfig) else _get(cfg, key) for key in keys}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
