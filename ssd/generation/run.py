"""The generate stage: prompts → vLLM samples (resumable, sharded) → degeneracy filter → train set.

Layout of a run directory (named by the sampling identity, see ``ssd.identity``)::

    samples.jsonl            one line per sample, append-only (merged from shards if sharded)
    samples-00001-of-00004.jsonl, shard-00001-of-00004.json   (data-parallel shards only)
    run.json                 the sampling record: resolved config, counts, diagnostics of the
                             sampled text (``diagnostics.py``), versions; "complete"
    filter-<settings>/       one folder per filter setting, content-addressed
        train.jsonl          the filtered SSD training set: the token ids as sampled
        filter.json          settings, counts per reason, cut samples kept open; "complete"
    metrics.csv              the job's generate/... metrics as one CSV row (logger.csv)
    wandb/                   one W&B run per job (logger.wandb; offline by default)

The filter is its own step: its identity is its settings plus the digest of samples.jsonl, so
changing a filter value writes a new ``filter-*`` folder (and train.py, keyed by the training
set's digest, trains again) but never samples again.

Every sample has a seed derived from (decoding.seed, prompt_id, sample_index), so its tokens do
not depend on what else is in the batch: a run killed at any point and restarted with the same
config ends with exactly the samples of an uninterrupted run.
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
from ssd.config import ConfigError
from ssd.data.decontamination import EvalSetLoader, check_pool, check_record, drop_overlapping
from ssd.data.eval_sets import check_eval_sets, eval_set_identity
from ssd.data.prompts import Prompt, chat_messages, load_pool
from ssd.generation.diagnostics import SCALARS, diagnose
from ssd.generation.filter import (
    REASONS,
    FilterResult,
    filter_samples,
    is_cut,
    training_record,
)
from ssd.identity import (
    StagePlan,
    config_values,
    input_identity,
    model_identity,
    stage_identity,
)
from ssd.models import resolve_model_path
from ssd.models.cache import file_lock
from ssd.records import SampleWriter, read_records, write_jsonl_atomic
from ssd.sampling import (
    Request,
    Sample,
    chat_prompt_ids,
    engine_settings,
    engine_versions,
    get_engine,
    sample_requests,
    sample_seed,
    sampling_params,
)

STAGE = "generate"  # the prefix of this stage's logged metric names
# Bump when what a sample record holds changes: part of the sampling identity.
SAMPLE_FORMAT = 2  # 2: prompt and completion token ids as sampled
FILTER_FORMAT = 1
# The values besides the model and the pool that decide which samples a run produces.
SAMPLE_KEYS = ["data.field", "data.limit", "data.hub_config", "data.hub_split", "decoding",
               "truncation", "engine.max_model_len", "model.dtype", "model.thinking"]
TRAIN_SET = "train.jsonl"


def validate(cfg: DictConfig) -> None:
    for check in (checks.check_model, checks.check_data, checks.check_decoding,
                  checks.check_truncation, checks.check_engine, checks.check_filter,
                  checks.check_shard, checks.check_logger, decontamination_sets):
        check(cfg)


def decontamination_sets(cfg: DictConfig) -> list[str]:
    """``data.decontaminate``, checked: the evaluation sets whose overlapping prompts are dropped
    before sampling (``ssd.data.decontamination``)."""
    return check_eval_sets(cfg, "data.decontaminate")


# -- identity and plans -------------------------------------------------------------------------
def sampling_plan(cfg: DictConfig) -> StagePlan:
    """Where the samples go and under which identity: the model and pool as content, plus every
    value that changes a sample. Not the filter (a step of its own) nor sharding."""
    values = config_values(cfg, SAMPLE_KEYS)
    inputs = {"model": model_identity(cfg.model.path), "pool": input_identity(cfg.data.path)}
    # The evaluation sets the pool is checked against, as content (a changed set or list is a
    # new run); absent when there are none, so an unchecked pool keeps its earlier identity.
    for spec in decontamination_sets(cfg):
        values[f"data.decontaminate/{spec}"], inputs[f"decontaminate/{spec}"] = \
            eval_set_identity(spec)
    identity = stage_identity(STAGE, SAMPLE_FORMAT, values, inputs)
    if cfg.output_dir:
        out = Path(cfg.output_dir)
    else:
        t = cfg.truncation
        name = (f"T{cfg.decoding.T:g}_k{t.top_k or 0}_p{t.top_p:g}_n{cfg.decoding.n}"
                f"_seed{cfg.decoding.seed}-{identity}")
        out = Path("runs") / "generate" / cfg.model.name / cfg.data.name / name
    return StagePlan(STAGE, out, identity, "run.json")


def filter_settings(cfg: DictConfig) -> dict[str, Any]:
    settings = OmegaConf.to_container(cfg.filter, resolve=True)
    assert isinstance(settings, dict)
    return settings


def filter_plan(cfg: DictConfig, sampling: StagePlan | None = None) -> StagePlan:
    """The filter step over a sampling run: its folder is named by the settings; its identity
    adds the digest of samples.jsonl (empty until the samples exist, and then never complete)."""
    sampling = sampling or sampling_plan(cfg)
    settings = filter_settings(cfg)
    folder = "filter-" + stage_identity("filter", FILTER_FORMAT, settings, {})[:8]
    samples = sampling.run_dir / "samples.jsonl"
    digest = input_identity(str(samples)) if sampling.complete() else None
    identity = (stage_identity("filter", FILTER_FORMAT, settings, {"samples": digest})
                if digest else "")
    return StagePlan("filter", sampling.run_dir / folder, identity, "filter.json")


def train_set_path(cfg: DictConfig) -> Path:
    """The training set this config's filter writes (train.py's ``data.samples``)."""
    return filter_plan(cfg).run_dir / TRAIN_SET


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


# -- sampling -----------------------------------------------------------------------------------
def sample_shard(cfg: DictConfig, prompts: list[Prompt], model_path: str, files: ShardFiles,
                 run_tag: str, model_id: str) -> dict[str, Any]:
    """Generate every missing (prompt, sample_index) of this shard, appending as they finish."""
    n = cfg.decoding.n
    started = time.perf_counter()
    with SampleWriter(files.samples) as writer:
        pending = [(p, i) for p in prompts for i in range(n) if (p.prompt_id, i) not in writer.done]
        counts: Counter[str] = Counter(expected=len(prompts) * n, resumed=len(writer.done),
                                       torn_bytes_repaired=writer.repaired_bytes)
        if pending:
            counts.update(_generate(cfg, pending, model_path, writer, run_tag, model_id))
    counts["seconds"] = round(time.perf_counter() - started, 3)
    return dict(counts)


def _generate(cfg: DictConfig, pending: list[tuple[Prompt, int]], model_path: str,
              writer: SampleWriter, run_tag: str, model_id: str) -> Counter[str]:
    llm = get_engine(engine_settings(cfg, model_path))
    tokenizer = llm.get_tokenizer()
    decoding = OmegaConf.to_container(cfg.decoding, resolve=True)
    truncation = OmegaConf.to_container(cfg.truncation, resolve=True)
    by_id = {prompt.prompt_id: prompt for prompt, _ in pending}
    prompt_ids = {pid: chat_prompt_ids(tokenizer, chat_messages(p.statement))
                  for pid, p in by_id.items()}
    requests = [Request((prompt.prompt_id, index), prompt_ids[prompt.prompt_id],
                        sample_seed(cfg.decoding.seed, prompt.prompt_id, index))
                for prompt, index in pending]
    bar = tqdm(total=len(pending), desc="samples", unit="sample", disable=not cfg.progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    done: Counter[str] = Counter()

    def write(sample: Sample) -> None:
        prompt_id, index = sample.request.key
        writer.write({
            "prompt_id": prompt_id,
            "sample_index": index,
            "messages": chat_messages(by_id[prompt_id].statement),
            "prompt_token_ids": sample.request.prompt_token_ids,
            "completion_token_ids": sample.token_ids,
            "completion": sample.text,
            "prompt_tokens": len(sample.request.prompt_token_ids),
            "completion_tokens": len(sample.token_ids),
            "finish_reason": sample.finish_reason,
            "model": cfg.model.path,
            "model_identity": model_id,
            "decoding": decoding,
            "truncation": truncation,
            "sample_seed": sample.request.seed,
        })
        done["samples"] += 1
        done["tokens"] += len(sample.token_ids)
        elapsed = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(samples_s=f"{done['samples'] / elapsed:.2f}",
                        tokens_s=f"{done['tokens'] / elapsed:.1f}", refresh=False)
        bar.update(1)

    try:
        return sample_requests(llm, requests,
                               lambda seed: sampling_params(cfg.decoding, cfg.truncation, seed),
                               write, run_tag)
    finally:
        bar.close()


def merge_shards(cfg: DictConfig, out: Path, prompts: list[Prompt]) -> list[dict[str, Any]]:
    """Every sample in pool order, the shards joined into samples.jsonl (if sharded)."""
    order = {p.prompt_id: rank for rank, p in enumerate(prompts)}
    count = cfg.shard.count
    shard_files = [ShardFiles.of(out, i, count).samples for i in range(count)]
    samples = [record for path in shard_files for record in read_records(path)]
    samples.sort(key=lambda r: (order[r["prompt_id"]], r["sample_index"]))
    if count > 1:
        write_jsonl_atomic(out / "samples.jsonl", samples)
    return samples


# -- the filter step ----------------------------------------------------------------------------
def filter_report(settings: dict[str, Any], samples: list[dict[str, Any]],
                  result: FilterResult) -> dict[str, Any]:
    return {"settings": settings, "samples": len(samples), "kept": len(result.kept),
            "dropped": {reason: result.dropped.get(reason, 0) for reason in REASONS},
            "cut_samples": {"policy": settings["cut_samples"], "kept_open": result.kept_open,
                            "cut": sum(map(is_cut, samples))},
            "kept_completion_tokens": sum(s["completion_tokens"] for s in result.kept)}


def run_filter(cfg: DictConfig, plan: StagePlan, samples_file: Path) -> dict[str, Any]:
    """Filter samples.jsonl into the plan's folder: train.jsonl, then filter.json (complete)."""
    samples = list(read_records(samples_file))
    settings = filter_settings(cfg)
    f = cfg.filter
    result = filter_samples(samples, f.drop_empty, f.drop_single_line, f.drop_shortest_fraction,
                            f.cut_samples)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(plan.run_dir / TRAIN_SET, (training_record(s) for s in result.kept))
    report = filter_report(settings, samples, result)
    plan.write_record(report)
    return report


# -- decontamination ----------------------------------------------------------------------------
def decontaminate(cfg: DictConfig, prompts: list[Prompt], eval_sets: EvalSetLoader | None
                  ) -> tuple[list[Prompt], dict[str, Any] | None]:
    """The pool without the prompts that overlap an evaluation set of ``data.decontaminate``,
    and the check's record (None when there are no sets)."""
    sets = decontamination_sets(cfg)
    if not sets:
        return prompts, None
    if eval_sets is None:
        raise ValueError("data.decontaminate needs the evaluation sets' loader "
                         "(generate.py passes ssd.evaluation.eval_set_problems)")
    problems = []
    for spec in sets:
        try:
            problems += eval_sets(spec)
        except ConfigError as error:
            raise ConfigError(f"data.decontaminate: {spec} cannot be loaded ({error}); a hub "
                              "preset reads a local copy as <preset>:<file>") from None
    check = check_pool(prompts, problems)
    kept = drop_overlapping(prompts, check)
    if not kept:
        raise ConfigError(f"data.decontaminate={sets}: every prompt of data.path="
                          f"{cfg.data.path} overlaps them; nothing is left to sample")
    return kept, check_record(check, sets)


# -- the stage ----------------------------------------------------------------------------------
def run_generation(cfg: DictConfig, eval_sets: EvalSetLoader | None = None) -> Path:
    """The whole stage for one job (one shard): sample what is missing, then (the job that
    completes the samples, or any job once they are complete) filter. Returns the run
    directory. ``eval_sets`` loads the evaluation sets of ``data.decontaminate`` (needed only
    when it names any)."""
    validate(cfg)
    sampling = sampling_plan(cfg)
    out = sampling.run_dir
    shard_counts: dict[str, Any] | None = None
    if not sampling.complete():
        shard_counts = sample_stage(cfg, sampling, eval_sets)
        if shard_counts is None or not sampling.complete():
            return out
    filtering = filter_plan(cfg, sampling)
    if filtering.complete():
        report = filtering.record()
        assert report is not None
        if shard_counts is None:
            print(f"generate: already complete, nothing to do: {filtering.run_dir}")
            return out
    else:
        if shard_counts is None:
            print(f"generate: samples complete in {out}; filtering only (nothing is sampled)")
        report = run_filter(cfg, filtering, out / "samples.jsonl")
    print(f"generate: {report['samples']} samples, {report['kept']} kept for training "
          f"({ {k: v for k, v in report['dropped'].items() if v} or 'none dropped'}; "
          f"{report['cut_samples']['kept_open']} cut at max_tokens kept open); "
          f"training set {filtering.run_dir / TRAIN_SET}")
    log_metrics(cfg, sampling, filtering, shard_counts or {}, report)
    return out


def sample_stage(cfg: DictConfig, sampling: StagePlan, eval_sets: EvalSetLoader | None
                 ) -> dict[str, Any] | None:
    """This job's shard, then (the job completing the last shard) the merge and the sampling
    record. Returns the shard's counts, or None when other shards are still missing (after
    logging them)."""
    out = sampling.run_dir
    pool = load_pool(cfg.data.path, cfg.data.field, None, cfg.data.get("hub_config"),
                     cfg.data.get("hub_split", "train"))
    # data.limit counts the prompts that are left once the overlapping ones are dropped.
    kept, decontamination = decontaminate(cfg, pool.prompts, eval_sets)
    prompts = kept[:cfg.data.limit]
    shard_prompts = prompts[cfg.shard.index::cfg.shard.count]
    checked = ("" if decontamination is None else
               f"; {decontamination['overlapping']} overlapping "
               f"{', '.join(decontamination['sets'])} dropped")
    print(f"generate: {len(prompts)} prompts ({pool.duplicates_dropped} duplicates and "
          f"{pool.empty_dropped} empty statements dropped from {pool.records_read} records"
          f"{checked}); shard {cfg.shard.index}/{cfg.shard.count}: {len(shard_prompts)} prompts "
          f"x {cfg.decoding.n} samples -> {out}")
    model_path = resolve_model_path(cfg.model.path)
    sampling.claim()
    files = ShardFiles.of(out, cfg.shard.index, cfg.shard.count)
    model_id = model_identity(cfg.model.path)
    shard_counts = sample_shard(cfg, shard_prompts, model_path, files, sampling.identity,
                                model_id)
    StagePlan(STAGE, out, sampling.identity, files.record.name).write_record(
        {"counts": shard_counts})

    with file_lock(out / ".merge.lock"):
        records = [ShardFiles.of(out, i, cfg.shard.count)
                   for i in range(cfg.shard.count)]
        last_shard = all(StagePlan(STAGE, out, sampling.identity, r.record.name).complete()
                         for r in records)
        if last_shard and not sampling.complete():
            samples = merge_shards(cfg, out, prompts)
            sampling.write_record({
                "config": OmegaConf.to_container(cfg, resolve=True),
                "model_resolved": model_path,
                "model_identity": model_id,
                "pool": {"records": pool.records_read,
                         "duplicates_dropped": pool.duplicates_dropped,
                         "empty_dropped": pool.empty_dropped, "prompts": len(prompts)},
                "decontamination": decontamination,
                "samples": len(samples),
                "finish_reasons": dict(Counter(s["finish_reason"] for s in samples)),
                "diagnostics": diagnose(samples),
                "shards": [json.loads(r.record.read_text())["counts"] for r in records],
                "versions": engine_versions(),
            })
    if not last_shard:
        # Logged outside the merge lock: W&B online can take seconds, and the other shards
        # wait on it.
        print(f"generate: shard {cfg.shard.index} done; waiting for the other shards")
        log_metrics(cfg, sampling, None, shard_counts, None)
        return None
    return shard_counts


# -- logging ------------------------------------------------------------------------------------
def flat_metrics(shard_counts: dict[str, Any], filter_report: dict[str, Any] | None,
                 decontamination: dict[str, Any] | None = None,
                 diagnostics: dict[str, Any] | None = None) -> dict[str, float]:
    """Stage-prefixed scalars of one job: what it sampled and how fast (every job), and the whole
    run's sample, kept and dropped counts (the job that merged and filtered), with the prompts
    dropped as overlapping the evaluation sets (the sampling record's ``decontamination``) and
    the diagnostics of the sampled text (its ``diagnostics``; a run sampled before they were
    recorded has none)."""
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
    if decontamination is not None:
        flat[f"{p}/decontamination/checked"] = decontamination["checked"]
        flat[f"{p}/decontamination/dropped"] = decontamination["overlapping"]
        flat[f"{p}/decontamination/shares_any_ngram"] = decontamination["shares_any_ngram"]
    if diagnostics is not None:
        for name in SCALARS:
            if diagnostics[name] is not None:
                flat[f"{p}/diagnostics/{name}"] = diagnostics[name]
    if filter_report is not None:
        dropped = filter_report["dropped"]
        flat[f"{p}/samples"] = filter_report["samples"]
        flat[f"{p}/kept"] = filter_report["kept"]
        flat[f"{p}/kept_completion_tokens"] = filter_report["kept_completion_tokens"]
        flat[f"{p}/cut"] = filter_report["cut_samples"]["cut"]
        flat[f"{p}/kept_open"] = filter_report["cut_samples"]["kept_open"]
        flat[f"{p}/dropped"] = sum(dropped.values())
        # Every rule's count, zeros included, so runs share the same chart keys.
        for reason, count in dropped.items():
            flat[f"{p}/dropped/{reason}"] = count
    return flat


def filter_table(filter_report: dict[str, Any]) -> tracking.Table:
    """The filter's outcome per sample as a table whose rows partition the samples: kept and
    ended by the model, kept open (cut at max_tokens), then each drop reason."""
    total = max(filter_report["samples"], 1)
    kept_open = filter_report["cut_samples"]["kept_open"]
    ended = filter_report["kept"] - kept_open
    rows = [["kept/ended", ended, ended / total], ["kept/open", kept_open, kept_open / total]]
    for reason, count in filter_report["dropped"].items():
        rows.append([f"dropped/{reason}", count, count / total])
    return ["outcome", "samples", "fraction"], rows


def log_metrics(cfg: DictConfig, sampling: StagePlan, filtering: StagePlan | None,
                shard_counts: dict[str, Any], filter_report: dict[str, Any] | None) -> None:
    """The logger group's outputs for this job: one W&B run (per shard when sharded, per filter
    once filtered, under their identities so a recomputation resumes it) and, from the job that
    filtered, metrics.csv in the filter's folder."""
    record = (sampling.record() if filtering is not None else None) or {}
    flat = flat_metrics(shard_counts, filter_report, record.get("decontamination"),
                        record.get("diagnostics"))
    if filtering is not None and cfg.logger.csv:
        tracking.write_csv(filtering.run_dir / "metrics.csv", flat)
    count = cfg.shard.count
    suffix = "" if count == 1 else f"-shard{cfg.shard.index:05d}-of-{count:05d}"
    if filtering is not None:
        suffix += f"-{filtering.run_dir.name}"
    tables = {} if filter_report is None else {f"{STAGE}/filter": filter_table(filter_report)}
    tracking.log_wandb(cfg, sampling.run_dir, stage=STAGE,
                       run_id=f"{STAGE}-{sampling.identity}{suffix}", metrics=flat,
                       tables=tables, name=sampling.run_dir.name + suffix)
