"""LoRA through PEFT in the training path, and exports as content.

Fast: the lora group's checks and identity, the merged export's arithmetic, and byte-identical
exports under HF_HUB_OFFLINE=1 and without. Slow: train.py with a rank-4 adapter end to end (only
the adapter trains, the merged export samples in vLLM, a checkpoint of one process resumes on
two to the same weights).
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, cli_error, compose
from tests.test_train import assert_vllm_generates

RANK = 4


@pytest.fixture(scope="module")
def token_samples(tmp_path_factory, tiny_model) -> Path:
    """A training set of sampled token ids (what generate.py writes), without an engine."""
    from transformers import AutoTokenizer

    end = AutoTokenizer.from_pretrained(tiny_model).eos_token_id
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("samples") / "train.jsonl"
    with open(path, "w") as handle:
        for _ in range(16):
            record = {"prompt_token_ids": [rng.randrange(300, 2000) for _ in range(8)],
                      "completion_token_ids": [rng.randrange(300, 2000)
                                               for _ in range(rng.randrange(8, 40))] + [end],
                      "finish_reason": "stop",
                      "messages": [{"role": "user", "content": "q"},
                                   {"role": "assistant", "content": "a"}]}
            handle.write(json.dumps(record) + "\n")
    return path


def train_overrides(samples: Path, *extra: str) -> list[str]:
    return ["model=tiny", f"data.samples={samples}", "trainer.max_seq_len=1024",
            "trainer.global_batch_size=4", "optimizer.lr=1e-3", "optimizer.min_lr=1e-4",
            "optimizer.warmup_steps=0", "progress=false", "logger=none", *extra]


# -- config and identity (fast) -----------------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("lora.rank=-1", "error: lora.rank=-1: must be an integer >= 0 (0: full fine-tuning"),
    ("lora.dropout=1.0", "error: lora.dropout=1.0: must be in [0, 1)"),
    ("lora.target_modules=[]", "error: lora.target_modules=[]: must be all-linear or a "
                               "non-empty list"),
    ("lora.target_modules=[q_proj,nope]", "error: lora.target_modules=['q_proj', 'nope']: the "
                                          "model has no linear layer named nope"),
])
def test_bad_lora_values_fail_in_one_line(token_samples, tmp_path, override, message):
    lines = cli_error("train", [*train_overrides(token_samples), "lora.rank=4", override,
                                f"output_dir={tmp_path / 'out'}"], tmp_path)
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_lora_values_are_part_of_the_identity_only_when_a_rank_is_set(token_samples):
    from ssd.training.run import training_plan

    def identity(*extra: str) -> str:
        return training_plan(compose("train", train_overrides(token_samples, *extra))).identity

    full = identity()
    # Off: the other LoRA values do not decide anything, and full fine-tuning keeps its identity.
    assert identity("lora.alpha=64", "lora.export_adapter=true") == full
    adapters = {identity("lora.rank=4"), identity("lora.rank=8"),
                identity("lora.rank=4", "lora.alpha=4"),
                identity("lora.rank=4", "lora.target_modules=[q_proj,v_proj]"),
                identity("lora.rank=4", "lora.export_adapter=true")}
    assert len(adapters) == 5 and full not in adapters
    # alpha null means 2 x rank: the same run as writing it out
    assert identity("lora.rank=4") == identity("lora.rank=4", "lora.alpha=8")


# -- exports (fast) -----------------------------------------------------------------------------
def test_merged_export_is_base_plus_scaled_update_and_leaves_the_live_weights(tiny_model,
                                                                             tmp_path):
    """The export merges W + (alpha / r) B A into a plain checkpoint and writes the adapter
    alone; merging must not add the update into the tensors it was given (on one process they
    are the training model's own)."""
    from transformers import AutoModelForCausalLM

    from ssd.training.export import write_hf_export
    from ssd.training.lora import LoraSettings, add_adapter

    settings = LoraSettings(rank=RANK, alpha=8.0, dropout=0.0,
                            target_modules=("q_proj", "down_proj"),
                            export_adapter=True)
    torch.manual_seed(0)
    adapted = add_adapter(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                          settings)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_()  # a trained adapter (B starts at zero)
    state = adapted.state_dict()  # the live tensors, as a one-process gather gives them
    before = {key: value.clone() for key, value in state.items()}
    write_hf_export(state, adapted.config, tiny_model, tmp_path / "hf", settings,
                    tmp_path / "adapter")
    assert all(torch.equal(state[key], before[key]) for key in state)

    merged = load_file(tmp_path / "hf" / "model.safetensors")
    base = load_file(Path(tiny_model) / "model.safetensors")
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert merged.keys() == base.keys()
    targeted = [key for key in merged if key.endswith(("q_proj.weight", "down_proj.weight"))]
    assert len(targeted) == 4  # two layers, two targets each
    for key in merged:
        if key not in targeted:
            assert torch.equal(merged[key], base[key]), key
            continue
        prefix = "base_model.model." + key.removesuffix(".weight")
        update = adapter[f"{prefix}.lora_B.weight"] @ adapter[f"{prefix}.lora_A.weight"]
        assert torch.allclose(merged[key], base[key] + 2.0 * update, atol=1e-5), key
        assert not torch.allclose(merged[key], base[key], atol=1e-3)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == RANK and config["lora_alpha"] == 8.0


EXPORT_SCRIPT = """
import sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM
from ssd.training.export import write_hf_export
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
write_hf_export(model.state_dict(), model.config, sys.argv[1], Path(sys.argv[2]))
"""


def folders_identical(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return (names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
            and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names))


@pytest.mark.slow  # two export processes
def test_the_same_weights_export_to_the_same_bytes_online_and_offline(tiny_model, tmp_path):
    """HF_HUB_OFFLINE=1 made the tokenizer record local_files_only=true in tokenizer_config.json:
    the same weights had two export digests. Each export here runs in its own process."""
    from ssd.identity import folder_digest

    folders = {}
    for offline in ("1", None):
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        if offline:
            env["HF_HUB_OFFLINE"] = offline
        folders[offline] = tmp_path / f"offline-{offline}"
        result = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, tiny_model,
                                 str(folders[offline])], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    online, offline = folders[None], folders["1"]
    assert "local_files_only" not in (online / "tokenizer_config.json").read_text()
    assert folders_identical(online, offline)
    assert folder_digest(online) == folder_digest(offline)


# -- train.py with LoRA end to end (slow) -------------------------------------------------------
def train(overrides: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], cwd=cwd,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def lora_run(samples: Path, out: Path, devices: int) -> list[str]:
    # 6 steps, checkpoint and export at step 4: the checkpoint at 4 is the one kept.
    return train_overrides(samples, f"lora.rank={RANK}", "lora.export_adapter=true",
                           "trainer.max_steps=6", "trainer.save_every_n_steps=4",
                           f"trainer.devices={devices}", f"output_dir={out}")


@pytest.fixture(scope="module")
def lora_reference(token_samples, tmp_path_factory) -> Path:
    """One process, a rank-4 adapter on every linear layer, an export in the middle."""
    out = tmp_path_factory.mktemp("lora")
    train(lora_run(token_samples, out, 1), out)
    return out


@pytest.mark.slow
def test_lora_trains_only_the_adapter_and_vllm_samples_the_merged_export(lora_reference,
                                                                        tiny_model):
    out = lora_reference
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    base = load_file(Path(tiny_model) / "model.safetensors")
    adapter_params = sum(v.numel() for v in load_file(
        out / "adapter" / "final" / "adapter_model.safetensors").values())
    assert record["trainable_parameters"] == adapter_params
    assert adapter_params < sum(v.numel() for v in base.values()) / 10

    # The checkpoint holds the adapter and its optimizer state, not the frozen base.
    import torch.distributed.checkpoint as dcp

    keys = dcp.FileSystemReader(out / "checkpoints" / "step-000004.ckpt").read_metadata()
    weights = [k for k in keys.state_dict_metadata if k.startswith("state_dict.")]
    assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)

    # Only the adapter changed: the merged export is the base plus the final adapter's update.
    merged = load_file(out / "hf" / "final" / "model.safetensors")
    final = load_file(out / "adapter" / "final" / "adapter_model.safetensors")
    middle = load_file(out / "adapter" / "step-000004" / "adapter_model.safetensors")
    for key in merged:
        prefix = "base_model.model." + key.removesuffix(".weight")
        if f"{prefix}.lora_A.weight" not in final:
            assert torch.equal(merged[key], base[key]), key  # embeddings, norms
            continue
        a, b = final[f"{prefix}.lora_A.weight"], final[f"{prefix}.lora_B.weight"]
        assert torch.allclose(merged[key], base[key] + 2.0 * (b @ a), atol=1e-6), key
    # The adapter trained: B left zero, and A kept moving after step 4.
    assert all(final[k].abs().max() > 0 for k in final if ".lora_B." in k)
    assert any(not torch.equal(final[k], middle[k]) for k in final if ".lora_A." in k)

    assert_vllm_generates(out / "hf" / "final")


@pytest.mark.slow
def test_a_lora_checkpoint_of_one_process_resumes_on_two_to_the_same_weights(
        lora_reference, token_samples, tmp_path):
    moved = tmp_path / "moved"
    checkpoint = lora_reference / "checkpoints" / "step-000004.ckpt"
    shutil.copytree(checkpoint, moved / "checkpoints" / checkpoint.name)
    result = train(lora_run(token_samples, moved, 2), tmp_path)
    assert "resuming from" in result.stdout
    record = json.loads((moved / "run.json").read_text())
    assert record["world_size"] == 2 and record["resumed_from"].endswith("step-000004.ckpt")
    reference = load_file(lora_reference / "hf" / "final" / "model.safetensors")
    resumed = load_file(moved / "hf" / "final" / "model.safetensors")
    assert reference.keys() == resumed.keys()
    # Steps 5 and 6 ran on two processes: float summation order differs.
    assert max(float((reference[k] - resumed[k]).abs().max()) for k in reference) < 1e-5
