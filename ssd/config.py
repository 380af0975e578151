"""Start-up validation of composed configs, with one-line errors that name the key and the fix.

Hydra composes; this module checks values before anything expensive starts (an engine, a model
download), so `python generate.py decoding.T=0` fails in a second with

    error: decoding.T=0: must be > 0 (temperature; 1.0 samples from the model as is)

Each group has one check function; entry scripts call the ones for the groups they compose.
"""

from __future__ import annotations

import math
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
# Sizes a preset derives from other keys (the demo's scale): integer arithmetic in the config,
# so the derived values are declared beside what they derive from.
_SIZE_RESOLVERS = {
    "ssd.scaled": lambda base, scale: max(1, round(base * scale)),   # base x scale, at least 1
    "ssd.ceil_mul": lambda share, n: math.ceil(share * n),           # ceil(share x n)
    "ssd.ceil_div": lambda n, d: max(1, math.ceil(n / d)),           # ceil(n / d), at least 1
}
for _name, _resolver in _SIZE_RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
import ssd.overrides  # noqa: E402, F401  (registers ${ssd.truncation:} and ${ssd.base_decoding:})


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


def get_value(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{key}: cannot be resolved ({error.__class__.__name__}: "
                          f"{str(error).splitlines()[0]})") from None


def require(cfg: DictConfig, key: str, ok: Callable[[Any], bool], accepted: str) -> Any:
    value = get_value(cfg, key)
    try:
        good = ok(value)
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"{key}={value}: must be {accepted}")
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_decoding(cfg: DictConfig) -> None:
    require(cfg, "decoding.T", lambda v: is_number(v) and v > 0,
           "> 0 (temperature; 1.0 samples from the model as is)")
    require(cfg, "decoding.seed", is_int, "an integer")
    require(cfg, "decoding.max_tokens", lambda v: v is None or (is_int(v) and v >= 1),
           "an integer >= 1, or null for up to the context limit")
    require(cfg, "decoding.n", lambda v: is_int(v) and v >= 1,
           "an integer >= 1 (samples per prompt)")


def check_truncation(cfg: DictConfig) -> None:
    require(cfg, "truncation.top_k", lambda v: v is None or (is_int(v) and v >= 0),
           "an integer >= 0 (0 or null disables top-k)")
    require(cfg, "truncation.top_p", lambda v: is_number(v) and 0 < v <= 1,
           "in (0, 1] (1.0 disables top-p)")
    require(cfg, "truncation.min_p", lambda v: v is None or (is_number(v) and 0 <= v < 1),
           "in [0, 1) (0 disables min-p)")


def check_model(cfg: DictConfig) -> None:
    require(cfg, "model.path", lambda v: isinstance(v, str) and v.strip() != "",
           "a builtin (builtin:tiny, builtin:smollm2-135m), a local HF folder or a hub id")
    require(cfg, "model.dtype", lambda v: v in {"auto", "float32", "bfloat16", "float16"},
           "one of auto, float32, bfloat16, float16")
    require(cfg, "model.thinking", lambda v: isinstance(v, bool), "true or false")


def check_data(cfg: DictConfig) -> None:
    path = require(cfg, "data.path", lambda v: isinstance(v, str) and v != "",
                  "a .json/.jsonl file or hub:<dataset id>")
    if not path.startswith("hub:"):
        require(cfg, "data.path", lambda v: Path(v).is_file(),
               "an existing .json/.jsonl file (or hub:<dataset id>)")
    require(cfg, "data.field", lambda v: isinstance(v, str) and v != "",
           "the name of the problem-statement field")
    require(cfg, "data.limit", lambda v: v is None or (is_int(v) and v >= 1),
           "an integer >= 1, or null for the whole pool")


def check_engine(cfg: DictConfig) -> None:
    require(cfg, "engine.tensor_parallel_size", lambda v: is_int(v) and v >= 1,
           "an integer >= 1")
    require(cfg, "engine.gpu_memory_utilization", lambda v: is_number(v) and 0 < v <= 1,
           "in (0, 1]")
    require(cfg, "engine.max_model_len", lambda v: v is None or (is_int(v) and v >= 16),
           "an integer >= 16, or null for the model's own")
    require(cfg, "engine.max_num_seqs", lambda v: v is None or (is_int(v) and v >= 1),
           "an integer >= 1, or null")
    require(cfg, "engine.cpu_kv_cache_gib", lambda v: is_number(v) and v > 0, "> 0 (GiB)")


def check_filter(cfg: DictConfig) -> None:
    for key in ("filter.drop_empty", "filter.drop_single_line"):
        require(cfg, key, lambda v: isinstance(v, bool), "true or false")
    require(cfg, "filter.drop_shortest_fraction", lambda v: is_number(v) and 0 <= v < 1,
           "in [0, 1) (0 keeps all lengths)")
    require(cfg, "filter.cut_samples", lambda v: v in ("keep_open", "drop"),
           "keep_open (train on samples cut at max_tokens without an end-of-turn label) or drop")


def check_shard(cfg: DictConfig) -> None:
    count = require(cfg, "shard.count", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    require(cfg, "shard.index", lambda v: is_int(v) and 0 <= v < count,
           f"an integer in [0, shard.count={count})")


def check_sft_samples(cfg: DictConfig) -> None:
    require(cfg, "data.samples", lambda v: isinstance(v, str) and Path(v).is_file(),
           "an existing train.jsonl written by generate.py "
           "(data.samples=<run>/filter-<settings>/train.jsonl)")


def check_sft_data(cfg: DictConfig) -> None:
    """train.py's data group, all but the training set itself (check_sft_samples)."""
    require(cfg, "data.packing", lambda v: isinstance(v, bool), "true or false")
    require(cfg, "data.overlong", lambda v: v in {"truncate", "drop"}, "truncate or drop")


def check_optimizer(cfg: DictConfig) -> None:
    lr = require(cfg, "optimizer.lr", lambda v: is_number(v) and v > 0, "> 0")
    require(cfg, "optimizer.min_lr", lambda v: is_number(v) and 0 <= v <= lr,
           f"in [0, optimizer.lr={lr}]")
    require(cfg, "optimizer.betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
           "two numbers in [0, 1), e.g. [0.9, 0.95]")
    require(cfg, "optimizer.weight_decay", lambda v: is_number(v) and v >= 0, ">= 0")
    require(cfg, "optimizer.eps", lambda v: is_number(v) and v > 0, "> 0")
    require(cfg, "optimizer.warmup_steps", lambda v: is_int(v) and v >= 0, "an integer >= 0")


def check_trainer(cfg: DictConfig) -> None:
    for key in ("trainer.max_steps", "trainer.global_batch_size", "trainer.save_every_n_steps",
                "trainer.num_nodes"):
        require(cfg, key, lambda v: is_int(v) and v >= 1, "an integer >= 1")
    row = require(cfg, "trainer.max_seq_len", lambda v: is_int(v) and v >= 16,
                  "an integer >= 16")
    require(cfg, "trainer.micro_batch_tokens", lambda v: is_int(v) and v >= row,
            f"an integer >= trainer.max_seq_len={row} (a micro-batch holds at least one row)")
    require(cfg, "trainer.gradient_clip_val", lambda v: v is None or (is_number(v) and v > 0),
           "> 0, or null for no clipping")
    require(cfg, "trainer.precision", lambda v: v in {"auto", "bf16", "fp32"},
           "one of auto, bf16, fp32")
    require(cfg, "trainer.activation_checkpointing", lambda v: isinstance(v, bool),
           "true or false")
    require(cfg, "trainer.devices", lambda v: v == "auto" or (is_int(v) and v >= 1),
           "auto or an integer >= 1 (processes per node)")
    require(cfg, "trainer.seed", is_int, "an integer")


def check_logger(cfg: DictConfig) -> None:
    if get_value(cfg, "logger.wandb") is not None:
        require(cfg, "logger.wandb.mode", lambda v: v in {"offline", "online", "disabled"},
               "offline, online or disabled")
        require(cfg, "logger.wandb.project", lambda v: isinstance(v, str) and v != "",
               "a W&B project name")
    require(cfg, "logger.csv", lambda v: isinstance(v, bool), "true or false")


def stats_options(cfg: DictConfig) -> dict[str, Any]:
    """The stats group, checked: ``ssd.bootstrap.compare``'s and ``passk_intervals``' keyword
    arguments (resamples, seed, resample_samples)."""
    return {
        "resamples": require(cfg, "stats.resamples", lambda v: is_int(v) and v >= 1,
                             "an integer >= 1 (bootstrap replicates; 10000 for reports)"),
        "seed": require(cfg, "stats.seed", is_int, "an integer"),
        "resample_samples": require(cfg, "stats.resample_samples",
                                    lambda v: isinstance(v, bool), "true or false"),
    }
