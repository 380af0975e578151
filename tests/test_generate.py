"""generate.py end to end on the tiny model with the real vLLM engine."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssd.generation.diagnostics import diagnose
from tests.conftest import REPO, compose

pytestmark = pytest.mark.slow

# The command, made small: 16 prompts at T=1.6, top-k 20, top-p 0.8.
BASE = ["model=tiny", "data.limit=16", "decoding.T=1.6", "truncation.top_k=20",
        "truncation.top_p=0.8", "engine.enforce_eager=true", "engine.max_num_seqs=8",
        "progress=false"]


def run_in_process(overrides: list[str]) -> Path:
    from ssd.generation.run import run_generation

    return run_generation(compose("generate", overrides))


def sample_set(out: Path) -> dict[tuple[str, int], str]:
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    keyed = {(r["prompt_id"], r["sample_index"]): r["completion"] for r in records}
    assert len(keyed) == len(records), "duplicate samples"
    return keyed


def test_generate_writes_samples_train_set_and_record(tmp_path):
    out = run_in_process([*BASE, "decoding.max_tokens=48", f"output_dir={tmp_path}/a"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16
    first = samples[0]
    assert first["decoding"]["T"] == 1.6 and first["truncation"]["top_k"] == 20
    assert first["truncation"]["top_p"] == 0.8
    assert first["messages"][0]["role"] == "system" and first["messages"][1]["role"] == "user"
    assert 0 < first["completion_tokens"] <= 48 and first["prompt_tokens"] > 0
    assert first["completion_tokens"] == len(first["completion_token_ids"])
    assert first["prompt_tokens"] == len(first["prompt_token_ids"])
    assert first["finish_reason"] in {"length", "stop"}
    assert first["model_identity"].startswith("builtin:tiny-qwen3-v")

    run = json.loads((out / "run.json").read_text())
    [folder] = out.glob("filter-*")
    filtered = json.loads((folder / "filter.json").read_text())
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert run["status"] == "complete" and run["pool"]["prompts"] == 16
    # the diagnostics of the sampled text, recorded and logged (metrics.csv, W&B summary)
    assert run["diagnostics"] == diagnose(samples) and run["diagnostics"]["samples"] == 16
    assert run["diagnostics"]["cut"] == sum(s["finish_reason"] == "length" for s in samples) / 16
    [metrics] = list(csv.DictReader((folder / "metrics.csv").open()))
    assert float(metrics["generate/diagnostics/code_block"]) == run["diagnostics"]["code_block"]
    [wandb_run] = out.glob("wandb/offline-run-*/run-*.wandb")
    assert b"generate/diagnostics/mixed_script" in wandb_run.read_bytes()
    assert filtered["status"] == "complete" and filtered["kept"] == len(train)
    assert filtered["kept"] + sum(filtered["dropped"].values()) == 16
    cut = sum(s["finish_reason"] == "length" for s in samples)
    assert filtered["cut_samples"] == {"policy": "keep_open", "cut": cut,
                                       "kept_open": sum(r["finish_reason"] == "length"
                                                        for r in train)}
    by_key = {(s["prompt_id"], s["sample_index"]): s for s in samples}
    for record in train:
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        assert len([x for x in record["messages"][2]["content"].splitlines() if x.strip()]) > 1
        sample = by_key[(record["prompt_id"], record["sample_index"])]
        assert record["completion_token_ids"] == sample["completion_token_ids"]
        assert record["prompt_token_ids"] == sample["prompt_token_ids"]

    # The same config again: nothing to do, and the same samples.
    before = (out / "samples.jsonl").read_bytes()
    assert run_in_process([*BASE, "decoding.max_tokens=48", f"output_dir={out}"]) == out
    assert (out / "samples.jsonl").read_bytes() == before


def test_same_seed_same_samples_whatever_the_batch(tmp_path):
    """Per-sample seeds: a different batch size and a different prompt order give the same text."""
    a = run_in_process([*BASE, "decoding.max_tokens=32", "decoding.n=2",
                        f"output_dir={tmp_path}/a"])
    sharded = [*BASE, "decoding.max_tokens=32", "decoding.n=2", f"output_dir={tmp_path}/b",
               "shard.count=2"]
    run_in_process([*sharded, "shard.index=1"])
    assert not (tmp_path / "b" / "samples.jsonl").exists()  # waits for the other shard
    b = run_in_process([*sharded, "shard.index=0"])
    assert sample_set(a) == sample_set(b)
    merged = [json.loads(x) for x in (b / "samples.jsonl").read_text().splitlines()]
    assert len(merged) == 32
    other = run_in_process([*BASE, "decoding.max_tokens=32", "decoding.n=2", "decoding.seed=1",
                            f"output_dir={tmp_path}/c"])
    assert sample_set(other) != sample_set(a)


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_samples(tmp_path):
    args = [*BASE, "decoding.max_tokens=256", "decoding.n=3"]
    reference = sample_set(run_in_process([*args, f"output_dir={tmp_path}/reference"]))

    out = tmp_path / "killed"
    command = [sys.executable, str(REPO / "generate.py"), *args, f"output_dir={out}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    samples = out / "samples.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 8:
            break
        time.sleep(0.05)
    assert process.poll() is None, "generation finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = samples.read_text().count("\n")
    assert 8 <= written < len(reference)
    assert not (out / "run.json").exists()
    with open(samples, "a") as handle:  # a torn last line, as a kill during a write leaves
        handle.write('{"prompt_id": "torn", "sample_ind')

    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert sample_set(out) == reference
    run = json.loads((out / "run.json").read_text())
    assert run["shards"][0]["resumed"] == written
    assert run["shards"][0]["generated"] == len(reference) - written
    assert run["shards"][0]["torn_bytes_repaired"] > 0


def test_output_dir_of_another_config_is_refused(tmp_path):
    from ssd.config import ConfigError

    run_in_process([*BASE, "decoding.max_tokens=8", f"output_dir={tmp_path}/a"])
    with pytest.raises(ConfigError, match="holds a run with a different config"):
        run_in_process([*BASE, "decoding.max_tokens=8", "decoding.T=0.7",
                        f"output_dir={tmp_path}/a"])
