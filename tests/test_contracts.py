"""The contracts between the stages, end to end on the real engines (tiny model):

* the tokens train.py trains on are the tokens vLLM sampled, end-of-turn a label exactly when the
  model produced it;
* identity is content: a changed filter value re-filters and re-trains but never re-samples, and a
  training set edited by hand is a new training run, never "already complete";
* the one request loop: an over-long prompt is a counted, recorded failure; an error leaves the
  engine holding no requests.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, compose

pytestmark = pytest.mark.slow

ENGINE = ["model=tiny", "engine.enforce_eager=true", "engine.max_num_seqs=16", "progress=false"]


def generate(overrides: list[str]) -> tuple[Path, Path]:
    """generate.py in process; returns (run directory, training set)."""
    from ssd.generation.run import run_generation, train_set_path

    cfg = compose("generate", [*ENGINE, *overrides])
    return run_generation(cfg), train_set_path(cfg)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- trained tokens are sampled tokens ------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.6, 2.0])
def test_the_trainers_batch_holds_the_ids_vllm_sampled(tmp_path, temperature):
    """At high temperature the tiny model samples id sequences its tokenizer would split
    differently (re-tokenising their text gives other ids). For every sample, the completion ids
    in the trainer's packed batch equal the ids vLLM samples for that request (drawn again here
    on the engine with the sample's own seed), and the last label is end-of-turn exactly when
    finish_reason is "stop"."""
    from transformers import AutoTokenizer

    from ssd.models import resolve_model_path
    from ssd.sampling import engine_settings, get_engine, sampling_params
    from ssd.training.data import IGNORE_INDEX, plan_step, read_training_set, training_examples

    overrides = ["data.limit=48", "decoding.n=2", "decoding.max_tokens=128",
                 f"decoding.T={temperature}", "truncation=none", "filter.drop_empty=false",
                 "filter.drop_single_line=false", f"output_dir={tmp_path}/g"]
    out, train_set = generate(overrides)
    samples = {(r["prompt_id"], r["sample_index"]): r for r in records(out / "samples.jsonl")}
    trained = records(train_set)
    assert len(trained) == len(samples) == 96

    # What vLLM samples for each request, asked again (same engine settings, per-sample seed).
    cfg = compose("generate", [*ENGINE, *overrides])
    llm = get_engine(engine_settings(cfg, resolve_model_path(cfg.model.path)))
    from vllm.inputs import TokensPrompt

    keys = list(samples)
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=samples[k]["prompt_token_ids"]) for k in keys],
        [sampling_params(cfg.decoding, cfg.truncation, samples[k]["sample_seed"]) for k in keys],
        use_tqdm=False)
    sampled = {k: list(o.outputs[0].token_ids) for k, o in zip(keys, outputs, strict=True)}
    finish = {k: o.outputs[0].finish_reason for k, o in zip(keys, outputs, strict=True)}

    # The trainer's batch: every sample in one step, packed into rows as train.py packs them.
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))
    examples, summary = training_examples(read_training_set(train_set), tokenizer)
    batch = plan_step(examples, list(range(len(examples))), packing=True, max_seq_len=4096,
                      micro_batch_tokens=64 * 4096, rank=0, world_size=1,
                      pad_id=tokenizer.pad_token_id)
    segments = []  # (input ids, labels) of each sequence in the packed rows
    for micro in batch.micro_batches:
        for ids, labels, positions in zip(micro["input_ids"].tolist(), micro["labels"].tolist(),
                                          micro["position_ids"].tolist(), strict=True):
            starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
            segments += [(ids[a:b], labels[a:b]) for a, b in itertools.pairwise(starts)]
    by_ids = {tuple(ids): labels for ids, labels in segments}

    eot = tokenizer.eos_token_id
    retokenised_differently = stops = 0
    for record in trained:
        key = (record["prompt_id"], record["sample_index"])
        prompt, completion = record["prompt_token_ids"], sampled[key]
        assert record["completion_token_ids"] == completion == samples[key][
            "completion_token_ids"]
        assert record["finish_reason"] == finish[key]
        labels = by_ids[tuple(prompt + completion)]  # the row segment holds exactly these ids
        assert labels == [IGNORE_INDEX] * len(prompt) + completion
        assert (labels[-1] == eot) == (finish[key] == "stop")
        stops += finish[key] == "stop"
        text = samples[key]["completion"]
        retokenised_differently += tokenizer(text, add_special_tokens=False)["input_ids"] != [
            i for i in completion if i != eot]
    assert summary["ended"] == stops and summary["open"] == len(trained) - stops
    # The case the contract is about occurs: sampled ids that re-tokenise differently (nearly
    # every sample of a random model; measured 100 of 100). That samples the model ended occur
    # is asserted with a sample size that makes it certain, in the next test.
    assert retokenised_differently > len(trained) // 2


def test_end_of_turn_labels_occur_where_the_model_stopped(tmp_path):
    """Over 256 samples of 128 tokens at T=2.0 the model ends ~10 (measured rate ~4 %); P(none)
    = e^-10 < 1e-4. Each ended sample's last label is end-of-turn, each cut one's is not."""
    from transformers import AutoTokenizer

    from ssd.models import resolve_model_path
    from ssd.training.data import read_training_set, training_examples

    _, train_set = generate(["data.limit=64", "decoding.n=4", "decoding.max_tokens=128",
                             "decoding.T=2.0", "truncation=none", "filter.drop_empty=false",
                             "filter.drop_single_line=false", f"output_dir={tmp_path}/g"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))
    training_set = read_training_set(train_set)
    examples, summary = training_examples(training_set, tokenizer)
    ended = [e for e, r in zip(examples, training_set.records, strict=True)
             if r["finish_reason"] == "stop"]
    assert summary["ended"] == len(ended) >= 1
    assert all(e.labels[-1] == tokenizer.eos_token_id for e in ended)
    cut = [e for e, r in zip(examples, training_set.records, strict=True)
           if r["finish_reason"] == "length"]
    assert cut and all(e.labels[-1] != tokenizer.eos_token_id for e in cut)
    assert all(len(e.labels) - e.labels.count(-100) == 128 for e in cut)


# -- identity is content --------------------------------------------------------------------------
def train(samples: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "train.py"), "model=tiny", f"data.samples={samples}",
               "trainer.max_steps=2", "trainer.global_batch_size=4", "trainer.max_seq_len=512",
               "optimizer.lr=1e-3", "logger=none", "progress=false", *extra]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_dirs(workspace: Path) -> list[Path]:
    return sorted(p.parent for p in workspace.glob("runs/train/tiny/*/run.json"))


def test_a_changed_filter_refilters_and_retrains_but_never_resamples(tmp_path):
    """The stale-reuse case: a filter value changed after sampling gives a new training set
    (another digest), a new train identity and new weights, with no new sampling; and a training
    set edited by hand is a new training run."""
    from safetensors.torch import load_file

    from ssd.identity import file_digest

    base = ["data.limit=16", "decoding.max_tokens=48", "filter.drop_single_line=false",
            f"output_dir={tmp_path}/g"]
    out, first = generate(base)
    sampled = (out / "samples.jsonl").read_bytes(), (out / "run.json").read_bytes()
    assert len(records(first)) == 16
    train(first, tmp_path)
    assert len(run_dirs(tmp_path)) == 1

    _, second = generate([*base, "filter.drop_shortest_fraction=0.5"])
    assert ((out / "samples.jsonl").read_bytes(), (out / "run.json").read_bytes()) == sampled
    assert second != first and second.parent.parent == out
    assert len(records(second)) == 8 and len(records(first)) == 16  # both kept, side by side
    assert file_digest(second) != file_digest(first)
    result = train(second, tmp_path)
    assert "already complete" not in result.stdout
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2
    identities = {json.loads((d / "run.json").read_text())["identity"] for d in dirs}
    assert len(identities) == 2
    weights = [load_file(d / "hf" / "final" / "model.safetensors") for d in dirs]
    assert any(float((weights[0][k] - weights[1][k]).abs().max()) > 0 for k in weights[0])

    # The same command again: complete. The file edited in place: a new run.
    assert "already complete" in train(second, tmp_path).stdout
    second.write_text("".join(second.read_text().splitlines(keepends=True)[:6]))
    assert "already complete" not in train(second, tmp_path).stdout
    assert len(run_dirs(tmp_path)) == 3


# -- the one request loop -------------------------------------------------------------------------
def test_an_over_long_prompt_is_a_recorded_failure_and_generation_finishes(tmp_path):
    pool = json.loads((REPO / "data" / "prompts" / "codeforces_sample.json").read_text())[:4]
    pool.insert(1, {"problem": "Read the numbers and print their sum. " * 400})
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(pool))
    out, train_set = generate([f"data.path={path}", "data.limit=null", "decoding.max_tokens=16",
                               "engine.max_model_len=1024", "filter.drop_single_line=false",
                               f"output_dir={tmp_path}/g"])
    samples = records(out / "samples.jsonl")
    assert len(samples) == 5
    [failed] = [s for s in samples if s["finish_reason"] == "prompt_too_long"]
    assert failed["completion_token_ids"] == [] and failed["prompt_tokens"] >= 1024
    report = json.loads((train_set.parent / "filter.json").read_text())
    assert report["dropped"]["prompt_too_long"] == 1 and report["kept"] <= 4
    run = json.loads((out / "run.json").read_text())
    assert run["shards"][0]["prompt_too_long"] == 1
    assert run["finish_reasons"]["prompt_too_long"] == 1


def test_an_error_in_the_loop_leaves_the_engine_without_requests(tiny_model):
    from ssd.sampling import (
        EngineSettings,
        Request,
        get_engine,
        sample_requests,
        sampling_params,
    )

    llm = get_engine(EngineSettings(model=tiny_model, dtype="float32", tensor_parallel_size=1,
                                    gpu_memory_utilization=0.9, max_model_len=512,
                                    max_num_seqs=4, enforce_eager=True, cpu_kv_cache_gib=1))
    cfg = compose("generate", ["decoding.max_tokens=64"])
    requests = [Request(("p", i), [1, 2, 3, 4], i) for i in range(12)]
    seen = []

    def fail(sample):
        seen.append(sample)
        raise RuntimeError("a writer failed")

    with pytest.raises(RuntimeError, match="a writer failed"):
        sample_requests(llm, requests, lambda seed: sampling_params(cfg.decoding, cfg.truncation,
                                                                    seed), fail, "t")
    assert len(seen) == 1
    assert not llm.llm_engine.has_unfinished_requests()
    # The engine serves the next job as usual.
    done = []
    counts = sample_requests(llm, requests[:3], lambda seed: sampling_params(
        cfg.decoding, cfg.truncation, seed), done.append, "u")
    assert counts["generated"] == 3 and len(done) == 3
