"""The train stage from a Hydra job: validate, pick the run directory, start the ranks.

One Hydra job is one training run. The job writes the resolved config into the run directory and
starts the ranks with torchrun (never with Lightning's own launcher, which would re-run the Hydra
sweep in every child): ``trainer.devices`` processes on this node, and with
``trainer.num_nodes > 1`` one job per node (e.g. a SLURM array or submitit job) joining the same
torchrun rendezvous. A run directory that already holds a checkpoint resumes from it; one whose
``run.json`` says complete for the same identity is left as it is.

The run's identity (``ssd.identity``) is the training set's content digest, the model's identity,
every optimizer, trainer and data value, and the LoRA values when ``lora.rank`` is set: a training
set edited in place, or re-filtered with other settings, is a new run in a new directory, never
"already complete".
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ssd import config as checks
from ssd.identity import StagePlan, config_values, input_identity, model_identity, stage_identity
from ssd.models import resolve_model_path
from ssd.processes import die_with_parent
from ssd.training import attention
from ssd.training.data import SamplesError, TrainingSet, largest_token_id, read_training_set
from ssd.training.lora import check_target_modules, lora_settings

STAGE = "train"
# Bump when what a run trains on changes for the same inputs: part of the identity.
TRAIN_FORMAT = 2  # 2: the sampled token ids (end-of-turn only where sampled)
# The values besides the model and the training set that decide the trained weights.
WEIGHT_KEYS = ["model.dtype", "data.packing", "data.overlong", "optimizer", "trainer"]


class TrainingFailed(RuntimeError):
    """The training processes exited with an error (their output says why)."""


def validate(cfg: DictConfig) -> TrainingSet:
    """Every value, and every line of the training set (a bad one is named); returns the set."""
    validate_settings(cfg)
    checks.check_sft_samples(cfg)
    return read_training_set(Path(cfg.data.samples))


def validate_settings(cfg: DictConfig) -> None:
    """Everything but the training set (drivers check this before the samples exist)."""
    for check in (checks.check_model, checks.check_sft_data, checks.check_optimizer,
                  checks.check_trainer, checks.check_logger):
        check(cfg)
    checks.require(cfg, "trainer.attention", lambda v: v in attention.CHOICES,
                   "one of " + ", ".join(attention.CHOICES))
    lora_settings(cfg)


def training_plan(cfg: DictConfig) -> StagePlan:
    """The run's directory and identity: the training set and model as content, plus values."""
    samples = Path(cfg.data.samples)
    values = config_values(cfg, WEIGHT_KEYS)
    lora = lora_settings(cfg)
    if lora is not None:  # absent for full fine-tuning, whose identities stay as they were
        values["lora"] = asdict(lora)  # every value: weights and export folders depend on them
    identity = stage_identity(STAGE, TRAIN_FORMAT, values, {
        "model": model_identity(cfg.model.path), "samples": input_identity(str(samples))})
    if cfg.output_dir:
        out = Path(cfg.output_dir)
    else:
        folder = samples.parent
        # generate.py writes <run>/filter-<settings>/train.jsonl: name the run after <run>.
        stem = (folder.parent.name if folder.name.startswith("filter-") else folder.name
                ) if samples.stem == "train" else samples.stem
        out = Path("runs") / "train" / cfg.model.name / f"{stem}-{identity}"
    return StagePlan(STAGE, out.resolve(), identity, "run.json")


def check_vocabulary(training_set: TrainingSet, model_path: str, samples: str) -> None:
    """Sampled ids must be ids of this model's vocabulary (samples of another model are not)."""
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_path).get_text_config().vocab_size
    largest = largest_token_id(training_set)
    if largest >= vocab:
        raise SamplesError(f"data.samples={samples}: holds token id {largest}, outside the "
                           f"model's vocabulary of {vocab}; train the model that sampled it")


def processes_per_node(devices: int | str) -> int:
    if devices != "auto":
        return int(devices)
    import torch

    return max(torch.cuda.device_count(), 1)


def rendezvous(num_nodes: int, identity: str) -> list[str]:
    """torchrun's rendezvous arguments: standalone on one node, else the first node's address."""
    if num_nodes == 1:
        return ["--standalone"]
    node_rank = os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID"))
    address = os.environ.get("MASTER_ADDR")
    if address is None and "SLURM_JOB_NODELIST" in os.environ:
        address = subprocess.run(["scontrol", "show", "hostnames",
                                  os.environ["SLURM_JOB_NODELIST"]], capture_output=True,
                                 text=True, check=True).stdout.split()[0]
    if node_rank is None or address is None:
        raise checks.ConfigError(
            f"trainer.num_nodes={num_nodes}: needs NODE_RANK and MASTER_ADDR (or a SLURM "
            "allocation) to find the other nodes; launch one train.py job per node")
    # Distinct per SLURM job, so two runs whose first node coincides do not collide.
    port = os.environ.get("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", 0)) % 2000))
    return [f"--nnodes={num_nodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={address}:{port}", f"--rdzv-id={identity}"]


def run_training(cfg: DictConfig) -> Path:
    training_set = validate(cfg)
    plan = training_plan(cfg)
    out = plan.run_dir
    if plan.complete():
        print(f"train: already complete, nothing to do: {out}")
        return out
    model_path = resolve_model_path(cfg.model.path)
    check_vocabulary(training_set, model_path, cfg.data.samples)
    lora = lora_settings(cfg)
    if lora is not None:
        check_target_modules(lora, model_path)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(resolved):
        resolved.output_dir = str(out)
        resolved.identity = plan.identity
        resolved.model_resolved = model_path
        resolved.data.samples = str(Path(cfg.data.samples).resolve())
    plan.claim()
    # Every node of a multi-node run writes the same config: atomically, so no rank reads a
    # half-written file on a shared filesystem.
    staged = out / f"config.yaml.{os.getpid()}.tmp"
    OmegaConf.save(resolved, staged)
    os.replace(staged, out / "config.yaml")

    nproc = processes_per_node(cfg.trainer.devices)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               *rendezvous(cfg.trainer.num_nodes, plan.identity),
               "-m", "ssd.training.worker", str(out / "config.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    launcher = os.getpid()
    returncode = subprocess.run(command, env=env,
                                preexec_fn=lambda: die_with_parent(launcher, "train")).returncode
    if returncode != 0:
        raise TrainingFailed(f"train: the training processes exited with status {returncode}; "
                             f"their output is above (run directory: {out})")
    if not plan.complete():
        raise TrainingFailed(f"train: the training processes ended without completing {out}")
    print(f"train: done; HF export in {out / 'hf' / 'final'}")
    return out
