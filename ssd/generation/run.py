"""The generate stage: prompts → vLLM samples (resumable, sharded) → degeneracy filter → train set.

Layout of a run directory::

    samples.jsonl            one line per sample, append-only (merged from shards if sharded)
    samples-00001-of-00004.jsonl, shard-00001-of-00004.json   (data-parallel shards only)
    train.jsonl              the filtered SSD training set in chat `messages` format
    filter.json              the filter's settings and counts per reason
    run.json                 resolved config, counts, timings, versions; status "complete"
    metrics.csv              the run's generate/... metrics as one CSV row (logger.csv)
    wandb/                   one W&B run per job (logger.wandb; offline by default)

Every sample has a seed derived from (decoding.seed, prompt_id, sample_index), so its text does not
depend on what else is in the batch: a run killed at any point and restarted with the same config
ends with exactly the samples of an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ssd import config as checks
from ssd import tracking
from ssd.data.prompts import Prompt, chat_messages, load_pool
from ssd.generation.engine import EngineSettings, get_engine, sample_seed, sampling_params
from ssd.generation.filter import EMPTY, SHORTEST, SINGLE_LINE, filter_samples, training_record
from ssd.generation.samples import (
    SampleWriter,
    read_records,
    write_json_atomic,
    write_jsonl_atomic,
)
from ssd.models import resolve_model_path
from ssd.models.cache import file_lock

# The values that decide which samples a run produces (its identity and directory name).
SAMPLE_KEYS = ["model", "data", "decoding", "truncation", "engine.max_model_len"]
STAGE = "generate"  # the prefix of this stage's logged metric names


def validate(cfg: DictConfig) -> None:
    for check in (checks.check_model, checks.check_data, checks.check_decoding,
                  checks.check_truncation, checks.check_engine, checks.check_filter,
                  checks.check_shard, checks.check_logger):
        check(cfg)


def output_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    t = cfg.truncation
    name = (f"T{cfg.decoding.T:g}_k{t.top_k or 0}_p{t.top_p:g}_n{cfg.decoding.n}"
            f"_seed{cfg.decoding.seed}-{checks.config_hash(cfg, SAMPLE_KEYS)}")
    return Path("runs") / "generate" / cfg.model.name / cfg.data.name / name


def engine_settings(cfg: DictConfig, model_path: str, logprobs_mode: str = "raw_logprobs"
                    ) -> EngineSettings:
    e = cfg.engine
    return EngineSettings(
        model=model_path, dtype=cfg.model.dtype, tensor_parallel_size=e.tensor_parallel_size,
        gpu_memory_utilization=e.gpu_memory_utilization, max_model_len=e.max_model_len,
        max_num_seqs=e.max_num_seqs, enforce_eager=e.enforce_eager,
        cpu_kv_cache_gib=e.cpu_kv_cache_gib, logprobs_mode=logprobs_mode,
    )


@dataclass
class ShardFiles:
    samples: Path
    record: Path

    @staticmethod
    def of(out: Path, index: int, count: int) -> ShardFiles:
        if count == 1:
            return ShardFiles(out / "samples.jsonl", out / "shard.json")
        tag = f"{index:05d}-of-{count:05d}"
        return ShardFiles(out / f"samples-{tag}.jsonl", out / f"shard-{tag}.json")


def _versions() -> dict[str, str]:
    import torch
    import transformers
    import vllm

    return {"vllm": vllm.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def sample_shard(cfg: DictConfig, prompts: list[Prompt], model_path: str, files: ShardFiles
                 ) -> dict[str, Any]:
    """Generate every missing (prompt, sample_index) of this shard, appending as they finish."""
    n = cfg.decoding.n
    started = time.perf_counter()
    with SampleWriter(files.samples) as writer:
        pending = [(p, i) for p in prompts for i in range(n) if (p.prompt_id, i) not in writer.done]
        counts: Counter[str] = Counter(expected=len(prompts) * n, resumed=len(writer.done),
                                       torn_bytes_repaired=writer.repaired_bytes)
        if pending:
            counts.update(_generate(cfg, pending, model_path, writer))
    counts["seconds"] = round(time.perf_counter() - started, 3)
    return dict(counts)


def _generate(cfg: DictConfig, pending: list[tuple[Prompt, int]], model_path: str,
              writer: SampleWriter) -> Counter[str]:
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    llm = get_engine(engine_settings(cfg, model_path))
    tokenizer = llm.get_tokenizer()
    decoding = OmegaConf.to_container(cfg.decoding, resolve=True)
    truncation = OmegaConf.to_container(cfg.truncation, resolve=True)
    token_ids: dict[str, list[int]] = {}
    requests, params = [], []
    for prompt, index in pending:
        if prompt.prompt_id not in token_ids:
            token_ids[prompt.prompt_id] = tokenizer.apply_chat_template(
                chat_messages(prompt.statement), add_generation_prompt=True, tokenize=True,
                return_dict=False)
        requests.append(TokensPrompt(prompt_token_ids=token_ids[prompt.prompt_id]))
        seed = sample_seed(cfg.decoding.seed, prompt.prompt_id, index)
        params.append(sampling_params(cfg.decoding, cfg.truncation, seed))
    # Our own request ids (the engine reports them back): prompt_id/sample_index.
    engine = llm.llm_engine
    by_request = {}
    for request, param, (prompt, index) in zip(requests, params, pending, strict=True):
        request_id = f"{prompt.prompt_id}/{index}"
        param.output_kind = RequestOutputKind.FINAL_ONLY  # only finished samples are needed
        engine.add_request(request_id, request, param)
        by_request[request_id] = (prompt, index, param.seed)

    counts: Counter[str] = Counter()
    bar = tqdm(total=len(pending), desc="samples", unit="sample", disable=not cfg.progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    while engine.has_unfinished_requests():
        for output in engine.step():
            if not output.finished:
                continue
            prompt, index, seed = by_request[output.request_id]
            completion = output.outputs[0]
            writer.write({
                "prompt_id": prompt.prompt_id,
                "sample_index": index,
                "messages": chat_messages(prompt.statement),
                "completion": completion.text,
                "prompt_tokens": len(output.prompt_token_ids or []),
                "completion_tokens": len(completion.token_ids),
                "finish_reason": completion.finish_reason,
                "model": cfg.model.path,
                "decoding": decoding,
                "truncation": truncation,
                "sample_seed": seed,
            })
            counts["generated"] += 1
            counts["prompt_tokens"] += len(output.prompt_token_ids or [])
            counts["completion_tokens"] += len(completion.token_ids)
            counts[f"finish_{completion.finish_reason}"] += 1
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(samples_s=f"{counts['generated'] / elapsed:.2f}",
                            tokens_s=f"{counts['completion_tokens'] / elapsed:.1f}",
                            refresh=False)
            bar.update(1)
    bar.close()
    return counts


def _merge_and_filter(cfg: DictConfig, out: Path, prompts: list[Prompt]) -> dict[str, Any]:
    """Join the shards in pool order (if sharded) and write the filtered training set."""
    order = {p.prompt_id: rank for rank, p in enumerate(prompts)}
    count = cfg.shard.count
    shard_files = [ShardFiles.of(out, i, count).samples for i in range(count)]
    samples = [record for path in shard_files for record in read_records(path)]
    samples.sort(key=lambda r: (order[r["prompt_id"]], r["sample_index"]))
    if count > 1:
        write_jsonl_atomic(out / "samples.jsonl", samples)
    f = cfg.filter
    result = filter_samples(samples, f.drop_empty, f.drop_single_line, f.drop_shortest_fraction)
    kept = write_jsonl_atomic(out / "train.jsonl", (training_record(s) for s in result.kept))
    report = {"settings": OmegaConf.to_container(f, resolve=True), "samples": len(samples),
              "kept": kept, "dropped": dict(result.dropped),
              "kept_completion_tokens": sum(s["completion_tokens"] for s in result.kept)}
    write_json_atomic(out / "filter.json", report)
    return report


def run_generation(cfg: DictConfig) -> Path:
    """The whole stage for one job (one shard); returns the run directory."""
    validate(cfg)
    out = output_dir(cfg)
    identity = checks.config_hash(cfg, SAMPLE_KEYS)
    run_file = out / "run.json"
    filter_settings = OmegaConf.to_container(cfg.filter, resolve=True)
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if (previous.get("status") == "complete" and previous.get("identity") == identity
                and previous.get("filter", {}).get("settings") == filter_settings):
            print(f"generate: already complete, nothing to do: {out}")
            return out

    pool = load_pool(cfg.data.path, cfg.data.field, cfg.data.limit,
                     cfg.data.get("hub_config"), cfg.data.get("hub_split", "train"))
    shard_prompts = pool.prompts[cfg.shard.index::cfg.shard.count]
    print(f"generate: {len(pool.prompts)} prompts ({pool.duplicates_dropped} duplicates and "
          f"{pool.empty_dropped} empty statements dropped from {pool.records_read} records); "
          f"shard {cfg.shard.index}/{cfg.shard.count}: {len(shard_prompts)} prompts "
          f"x {cfg.decoding.n} samples -> {out}")
    model_path = resolve_model_path(cfg.model.path)
    checks.claim_output_dir(out, identity)
    files = ShardFiles.of(out, cfg.shard.index, cfg.shard.count)
    shard_counts = sample_shard(cfg, shard_prompts, model_path, files)
    write_json_atomic(files.record, {"status": "complete", "identity": identity,
                                     "counts": shard_counts})

    with file_lock(out / ".merge.lock"):
        records = [ShardFiles.of(out, i, cfg.shard.count).record
                   for i in range(cfg.shard.count)]
        last_shard = all(r.exists() for r in records)
        if last_shard:
            filter_report = _merge_and_filter(cfg, out, pool.prompts)
            write_json_atomic(run_file, {
                "status": "complete",
                "identity": identity,
                "config": OmegaConf.to_container(cfg, resolve=True),
                "model_resolved": model_path,
                "pool": {"records": pool.records_read,
                         "duplicates_dropped": pool.duplicates_dropped,
                         "empty_dropped": pool.empty_dropped, "prompts": len(pool.prompts)},
                "shards": [json.loads(r.read_text())["counts"] for r in records],
                "filter": filter_report,
                "versions": _versions(),
            })
    # Logged outside the merge lock: W&B online can take seconds, and the other shards wait on it.
    if not last_shard:
        print(f"generate: shard {cfg.shard.index} done; waiting for the other shards")
        log_metrics(cfg, out, identity, shard_counts, None)
        return out
    print(f"generate: {filter_report['samples']} samples, {filter_report['kept']} kept for "
          f"training ({filter_report['dropped'] or 'none dropped'}); outputs in {out}")
    log_metrics(cfg, out, identity, shard_counts, filter_report)
    return out


# -- logging ------------------------------------------------------------------------------------
def flat_metrics(shard_counts: dict[str, Any], filter_report: dict[str, Any] | None
                 ) -> dict[str, float]:
    """Stage-prefixed scalars of one job: what it sampled and how fast (every job), and the whole
    run's sample, kept and dropped counts (the job that merged and filtered)."""
    p = STAGE
    seconds = shard_counts.get("seconds", 0.0)
    generated = shard_counts.get("generated", 0)
    tokens = shard_counts.get("completion_tokens", 0)
    flat: dict[str, float] = {
        f"{p}/generated": generated,  # sampled by this job (a resumed run skips the rest)
        f"{p}/resumed": shard_counts.get("resumed", 0),
        f"{p}/prompt_tokens": shard_counts.get("prompt_tokens", 0),
        f"{p}/completion_tokens": tokens,
        f"{p}/seconds": seconds,
        # Wall-clock rates of the job's sampling (engine start included): what a run costs.
        f"{p}/samples_per_s": generated / seconds if seconds > 0 else 0.0,
        f"{p}/tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
    }
    for key, value in shard_counts.items():
        if key.startswith("finish_"):
            flat[f"{p}/finish/{key.removeprefix('finish_')}"] = value
    if filter_report is not None:
        dropped = filter_report["dropped"]
        flat[f"{p}/samples"] = filter_report["samples"]
        flat[f"{p}/kept"] = filter_report["kept"]
        flat[f"{p}/kept_completion_tokens"] = filter_report["kept_completion_tokens"]
        flat[f"{p}/dropped"] = sum(dropped.values())
        # Every rule's count, zeros included, so runs share the same chart keys.
        for reason in sorted({EMPTY, SINGLE_LINE, SHORTEST, *dropped}):
            flat[f"{p}/dropped/{reason}"] = dropped.get(reason, 0)
    return flat


def filter_table(filter_report: dict[str, Any]) -> tracking.Table:
    """The filter's outcome per sample as a table: kept, then each drop reason."""
    total = max(filter_report["samples"], 1)
    rows = [["kept", filter_report["kept"], filter_report["kept"] / total]]
    for reason in sorted({EMPTY, SINGLE_LINE, SHORTEST, *filter_report["dropped"]}):
        count = filter_report["dropped"].get(reason, 0)
        rows.append([f"dropped/{reason}", count, count / total])
    return ["outcome", "samples", "fraction"], rows


def log_metrics(cfg: DictConfig, out: Path, identity: str, shard_counts: dict[str, Any],
                filter_report: dict[str, Any] | None) -> None:
    """The logger group's outputs for this job: one W&B run (per shard when sharded, under the
    run's identity so a recomputation resumes it) and, from the job that filtered, metrics.csv."""
    flat = flat_metrics(shard_counts, filter_report)
    if filter_report is not None and cfg.logger.csv:
        tracking.write_csv(out / "metrics.csv", flat)
    count = cfg.shard.count
    suffix = "" if count == 1 else f"-shard{cfg.shard.index:05d}-of-{count:05d}"
    tables = {} if filter_report is None else {f"{STAGE}/filter": filter_table(filter_report)}
    tracking.log_wandb(cfg, out, stage=STAGE, run_id=f"{STAGE}-{identity}{suffix}",
                       metrics=flat, tables=tables, name=out.name + suffix)
