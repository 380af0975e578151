"""HF exports of the trained model that vLLM, transformers and this project load directly.

Every ``every_n_steps`` optimizer steps and at the end of training, the full state dict is
gathered (from the FSDP2 shards, if sharded) onto rank 0's CPU and written with
``save_pretrained`` (safetensors) next to the tokenizer and a generation config, first into a
temporary folder that is then renamed, so an export folder either is complete or does not exist:

    hf/step-000250/   hf/step-000500/   ...   hf/final/
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch


def export_hf(module: Any, trainer: L.Trainer, folder: Path, tokenizer_path: str) -> None:
    """Gather the full weights (a collective: every rank calls it) and save them on rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(
        module.model.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.is_global_zero:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        # A plain (unsharded) model around the gathered tensors: saving the FSDP-wrapped one
        # would record its generated class name ("FSDPQwen3ForCausalLM") as the architecture.
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(module.model.model.config)
        plain.load_state_dict(state, assign=True)
        plain.tie_weights()
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        tokenizer.save_pretrained(tmp)
        try:
            GenerationConfig.from_pretrained(tokenizer_path).save_pretrained(tmp)
        except OSError:  # the base model had no generation config: write the end-of-turn one
            GenerationConfig(eos_token_id=tokenizer.eos_token_id).save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    trainer.strategy.barrier("hf-export")


class HFExport(L.Callback):
    def __init__(self, root: Path, every_n_steps: int, tokenizer_path: str) -> None:
        self.root = root
        self.every_n_steps = every_n_steps
        self.tokenizer_path = tokenizer_path

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step < trainer.max_steps:
            export_hf(module, trainer, self.root / f"step-{step:06d}", self.tokenizer_path)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        export_hf(module, trainer, self.root / "final", self.tokenizer_path)
