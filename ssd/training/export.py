"""HF exports of the trained model that vLLM, transformers and this project load directly.

Every ``every_n_steps`` optimizer steps and at the end of training, the full state dict is
gathered (from the FSDP2 shards, if sharded) onto rank 0's CPU and written with
``save_pretrained`` (safetensors) next to the tokenizer and a generation config, first into a
temporary folder that is then renamed, so an export folder either is complete or does not exist:

    hf/step-000250/   hf/step-000500/   ...   hf/final/

A LoRA run's export holds the base with the adapter merged into it: a plain checkpoint of the
base's architecture. With ``lora.export_adapter=true`` the adapter alone (PEFT's format) is also
written, under ``adapter/`` with the same step names.

An export is content: the same weights give the same bytes whatever the environment, so an
evaluation keyed by the export's digest is not computed twice for one model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ssd.training.lora import LoraSettings, adapted_from_state

# What ``from_pretrained`` records about how it found the files (``local_files_only`` is true
# under HF_HUB_OFFLINE=1) lands among a tokenizer's settings and would be written into
# tokenizer_config.json: the same tokenizer would give another export in another environment.
LOAD_TIME_KWARGS = ("is_local", "local_files_only", "cache_dir", "force_download", "token",
                    "revision", "subfolder", "trust_remote_code", "_from_auto", "_commit_hash")


def _write_atomically(folder: Path, write: Any) -> None:
    """``write(tmp)`` into a sibling folder, then rename it to ``folder``."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def write_hf_export(state: dict[str, torch.Tensor], config: Any, tokenizer_path: str,
                    folder: Path, lora: LoraSettings | None = None,
                    adapter_folder: Path | None = None) -> None:
    """Save gathered weights as an HF model folder (merging a LoRA adapter into the base), with
    the base's tokenizer and generation config; the adapter alone into ``adapter_folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if lora is None:
        # A plain (unsharded) model around the gathered tensors: saving the FSDP-wrapped one
        # would record its generated class name ("FSDPQwen3ForCausalLM") as the architecture.
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(state, assign=True)
    else:
        adapted = adapted_from_state(state, config, lora)
        if adapter_folder is not None:
            _write_atomically(adapter_folder, lambda tmp: adapted.save_pretrained(
                tmp, safe_serialization=True))
        plain = adapted.merge_and_unload()  # W + (alpha / rank) B A, in place
    plain.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    for key in LOAD_TIME_KWARGS:
        tokenizer.init_kwargs.pop(key, None)

    def write(tmp: Path) -> None:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            GenerationConfig.from_pretrained(tokenizer_path).save_pretrained(tmp)
        except OSError:  # the base model had no generation config: write the end-of-turn one
            GenerationConfig(eos_token_id=tokenizer.eos_token_id).save_pretrained(tmp)

    _write_atomically(folder, write)


def export_hf(module: Any, trainer: L.Trainer, folder: Path, tokenizer_path: str,
              adapter_folder: Path | None = None) -> None:
    """Gather the full weights (a collective: every rank calls it) and save them on rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    model = module.model.model
    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.is_global_zero:
        write_hf_export(state, model.config, tokenizer_path, folder, module.lora, adapter_folder)
    trainer.strategy.barrier("hf-export")


class HFExport(L.Callback):
    """Exports every ``every_n_steps`` steps and at the end; the adapters too if ``adapters``
    (a LoRA run's ``lora.export_adapter``) names their root."""

    def __init__(self, root: Path, every_n_steps: int, tokenizer_path: str,
                 adapters: Path | None = None) -> None:
        self.root = root
        self.every_n_steps = every_n_steps
        self.tokenizer_path = tokenizer_path
        self.adapters = adapters

    def _export(self, trainer: L.Trainer, module: Any, name: str) -> None:
        export_hf(module, trainer, self.root / name, self.tokenizer_path,
                  self.adapters / name if self.adapters is not None else None)

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step < trainer.max_steps:
            self._export(trainer, module, f"step-{step:06d}")

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        self._export(trainer, module, "final")
