"""One training process (one rank), started by torchrun: ``python -m ssd.training.worker CONFIG``.

CONFIG is the resolved config that train.py wrote into the run directory. Lightning sees the
torchrun environment and joins the process group instead of launching processes of its own;
``DataParallelStrategy`` (strategy.py: Lightning's ``ModelParallelStrategy``, data-parallel size =
world size, tensor-parallel 1) gives the module a device mesh, and on several processes the module
shards itself with FSDP2 (``fully_shard``), which, unlike Lightning's ``FSDPStrategy``, also runs
on CPU (gloo).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from ssd.identity import StagePlan
from ssd.processes import die_with_parent
from ssd.training.attention import attention_implementation
from ssd.training.data import (
    SAMPLED_IDS,
    Example,
    LengthPolicy,
    StepBatch,
    apply_length_policy,
    plan_step,
    read_training_set,
    step_indices,
    training_examples,
)
from ssd.training.export import HFExport
from ssd.training.lora import lora_settings
from ssd.training.module import SFTModule
from ssd.training.run import STAGE
from ssd.training.strategy import CHECKPOINT_COMPLETE_FILE, DataParallelStrategy

CHECKPOINT_PREFIX = "step-"


class StepDataset(Dataset):
    """Item ``step`` is this rank's share of optimizer step ``step`` (a pure function of it)."""

    def __init__(self, examples: list[Example], cfg: DictConfig, rank: int, world_size: int,
                 pad_id: int) -> None:
        self.examples = examples
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.pad_id = pad_id

    def __len__(self) -> int:
        return self.cfg.trainer.max_steps

    def __getitem__(self, step: int) -> StepBatch:
        t = self.cfg.trainer
        indices = step_indices(len(self.examples), t.global_batch_size, step, t.seed)
        return plan_step(self.examples, indices, packing=self.cfg.data.packing,
                         max_seq_len=t.max_seq_len, micro_batch_tokens=t.micro_batch_tokens,
                         rank=self.rank, world_size=self.world_size, pad_id=self.pad_id)


class ResumeSampler(Sampler[int]):
    """Steps from the trainer's restored ``global_step`` to the end: the data position."""

    def __init__(self, trainer: L.Trainer, max_steps: int) -> None:
        self.trainer = trainer
        self.max_steps = max_steps

    def __iter__(self):
        return iter(range(self.trainer.global_step, self.max_steps))

    def __len__(self) -> int:
        return self.max_steps - self.trainer.global_step


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, if any."""
    complete = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*.ckpt")
                if (p / CHECKPOINT_COMPLETE_FILE).exists()]
    return max(complete, key=lambda p: int(p.stem.removeprefix(CHECKPOINT_PREFIX)), default=None)


def _loggers(cfg: DictConfig, out: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    loggers: list[Any] = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=out, name="csv", version=""))
    w = cfg.logger.wandb
    if w is not None:
        loggers.append(WandbLogger(
            project=w.project, entity=w.entity, group=w.group, name=out.name, save_dir=str(out),
            mode=w.mode, id=cfg.identity, resume="allow",
            config=OmegaConf.to_container(cfg, resolve=True)))
    return loggers


# Checkpoints after the optimizer step are exactly what resuming needs.
warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")


def lightning_trainer(world_size: int, num_nodes: int, max_steps: int, **options: Any
                      ) -> L.Trainer:
    """The Lightning trainer of one rank (``train``; bench/gpu_check.py): this node's devices,
    data parallel over every process, fp32 weights, the step loop alone (the step dataset deals
    rows to ranks itself; no validation). ``options``: loggers, callbacks and the like."""
    return L.Trainer(
        accelerator="gpu" if torch.cuda.is_available() else "cpu",
        devices=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        num_nodes=num_nodes,
        strategy=DataParallelStrategy(world_size),
        precision="32-true",  # mixed precision is the module's (FSDP2's policy, or autocast)
        max_steps=max_steps,
        enable_model_summary=False,
        log_every_n_steps=1,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **options,
    )


def train(cfg: DictConfig) -> None:
    from transformers import AutoTokenizer

    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    out = Path(cfg.output_dir)
    t = cfg.trainer
    torch.manual_seed(t.seed)

    tokenizer = AutoTokenizer.from_pretrained(cfg.model_resolved)
    examples, training_set = training_examples(read_training_set(Path(cfg.data.samples)),
                                               tokenizer)
    examples, length_counts = apply_length_policy(
        examples, LengthPolicy(t.max_seq_len, cfg.data.overlong))
    if rank == 0:
        how = ("token ids as sampled" if training_set["tokens"] == SAMPLED_IDS
               else "chat messages through the chat template")
        print(f"train: {len(examples)} samples ({how}; {training_set['ended']} ended by the "
              f"model, {training_set['open']} cut at max_tokens trained open; "
              f"{length_counts['truncated']} truncated, {length_counts['dropped']} dropped as "
              f"longer than {t.max_seq_len} tokens); {t.max_steps} steps of "
              f"{t.global_batch_size} sequences on {world_size} process(es) -> {out}",
              flush=True)
    if not examples:
        raise SystemExit(f"train: every sample is longer than trainer.max_seq_len={t.max_seq_len}"
                         "; raise it or use data.overlong=truncate")

    gpu = torch.cuda.is_available()
    bf16 = t.precision == "bf16" or (t.precision == "auto" and gpu
                                     and torch.cuda.is_bf16_supported())
    implementation = attention_implementation(t.attention, gpu)
    lora = lora_settings(cfg)
    module = SFTModule(cfg.model_resolved, OmegaConf.to_container(cfg.optimizer, resolve=True),
                       t.max_steps, t.gradient_clip_val, t.activation_checkpointing, bf16,
                       implementation, lora)
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints",
                                  filename=CHECKPOINT_PREFIX + "{step:06d}",
                                  auto_insert_metric_name=False,
                                  every_n_train_steps=t.save_every_n_steps, save_top_k=1)
    trainer = lightning_trainer(
        world_size, t.num_nodes, t.max_steps,
        logger=_loggers(cfg, out),
        callbacks=[checkpoints, HFExport(
            out / "hf", t.save_every_n_steps, cfg.model_resolved,
            out / "adapter" if lora is not None and lora.export_adapter else None)],
        enable_progress_bar=cfg.progress,
        default_root_dir=out,
    )
    loader = DataLoader(StepDataset(examples, cfg, rank, world_size, tokenizer.pad_token_id
                                    if tokenizer.pad_token_id is not None
                                    else tokenizer.eos_token_id),
                        sampler=ResumeSampler(trainer, t.max_steps), batch_size=None,
                        collate_fn=lambda batch: batch)
    resume_from = latest_checkpoint(out / "checkpoints")
    if resume_from and rank == 0:
        print(f"train: resuming from {resume_from}", flush=True)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader, ckpt_path=resume_from)
    if trainer.is_global_zero:
        StagePlan(STAGE, out, cfg.identity, "run.json").write_record({
            "config": OmegaConf.to_container(cfg, resolve=True),
            "samples": len(examples) + length_counts["dropped"],
            "training_set": training_set,
            "length_policy": length_counts,
            "matmul_dtype": module.matmul_dtype,
            "attention": implementation,
            "resumed_from": str(resume_from) if resume_from else None,
            "final_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "seconds": round(time.perf_counter() - started, 3),
            "world_size": world_size,
            "hf_export": str(out / "hf" / "final"),
            "trainable_parameters": sum(p.numel() for p in module.parameters()
                                        if p.requires_grad),
        })


def main() -> None:
    die_with_parent(who="train")  # with torchrun
    cfg = OmegaConf.load(sys.argv[1])
    assert isinstance(cfg, DictConfig)
    train(cfg)


if __name__ == "__main__":
    main()
