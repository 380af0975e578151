"""The train stage from a Hydra job: validate, pick the run directory, start the ranks.

One Hydra job is one training run. The job writes the resolved config into the run directory and
starts the ranks with torchrun (never with Lightning's own launcher, which would re-run the Hydra
sweep in every child): ``trainer.devices`` processes on this node, and with
``trainer.num_nodes > 1`` one job per node (e.g. a SLURM array or submitit job) joining the same
torchrun rendezvous. A run directory that already holds a checkpoint resumes from it; one whose
``run.json`` says complete for the same identity is left as it is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ssd import config as checks
from ssd.evaluation._linux import PR_SET_PDEATHSIG, prctl
from ssd.models import resolve_model_path
from ssd.training.data import read_training_set

# The values that decide the trained weights (the run's identity and directory name).
WEIGHT_KEYS = ["model", "data", "optimizer", "trainer"]


class TrainingFailed(RuntimeError):
    """The training processes exited with an error (their output says why)."""


def validate(cfg: DictConfig) -> None:
    for check in (checks.check_model, checks.check_sft_data, checks.check_optimizer,
                  checks.check_trainer, checks.check_logger):
        check(cfg)
    read_training_set(Path(cfg.data.samples))  # fails fast on a bad line, names it


def output_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    samples = Path(cfg.data.samples)
    stem = samples.parent.name if samples.stem == "train" else samples.stem
    return (Path("runs") / "train" / cfg.model.name
            / f"{stem}-{checks.config_hash(cfg, WEIGHT_KEYS)}")


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


def die_with_parent(parent: int | None = None) -> None:
    """Have the kernel SIGKILL this process as soon as its parent dies.

    torchrun starts each rank in a session of its own, so a SIGKILL to the job's process group
    (or to the launcher alone) would leave the ranks training on, orphaned, beside the rerun that
    resumes the same run directory. Each link (train.py -> torchrun -> rank) dies with the one
    above it. A parent that died before this call has already handed the process over to
    another: ``parent`` is the pid it must still be, or, unknown, it must not be init.
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    orphaned = os.getppid() != parent if parent is not None else os.getppid() == 1
    if orphaned:
        os.write(2, b"train: the launching process is gone; not starting\n")
        os._exit(1)


def run_training(cfg: DictConfig) -> Path:
    validate(cfg)
    out = output_dir(cfg).resolve()
    identity = checks.config_hash(cfg, WEIGHT_KEYS)
    run_file = out / "run.json"
    if run_file.exists() and json.loads(run_file.read_text()).get("identity") == identity:
        print(f"train: already complete, nothing to do: {out}")
        return out
    model_path = resolve_model_path(cfg.model.path)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(resolved):
        resolved.output_dir = str(out)
        resolved.identity = identity
        resolved.model_resolved = model_path
        resolved.data.samples = str(Path(cfg.data.samples).resolve())
    checks.claim_output_dir(out, identity)
    # Every node of a multi-node run writes the same config: atomically, so no rank reads a
    # half-written file on a shared filesystem.
    staged = out / f"config.yaml.{os.getpid()}.tmp"
    OmegaConf.save(resolved, staged)
    os.replace(staged, out / "config.yaml")

    nproc = processes_per_node(cfg.trainer.devices)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               *rendezvous(cfg.trainer.num_nodes, identity),
               "-m", "ssd.training.worker", str(out / "config.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    launcher = os.getpid()
    returncode = subprocess.run(command, env=env,
                                preexec_fn=lambda: die_with_parent(launcher)).returncode
    if returncode != 0:
        raise TrainingFailed(f"train: the training processes exited with status {returncode}; "
                             f"their output is above (run directory: {out})")
    print(f"train: done; HF export in {out / 'hf' / 'final'}")
    return out


