"""LoRA (the ``lora`` config group): train a low-rank adapter instead of every weight, via PEFT.

``lora.rank=0`` (the default) is full fine-tuning, and then nothing here touches the model. With
``lora.rank=r`` each targeted linear layer W of the base gets a trainable update
``(alpha / r) * B @ A`` (A: r x in, B: out x r, B starting at zero), the base weights are frozen,
and the optimizer holds only A and B. The rest of the training path is unchanged: the same
Lightning module, FSDP2 sharding (frozen and trainable parameters shard alike), activation
checkpointing, chunked loss and packed attention. Distributed checkpoints hold only the trainable
tensors and their optimizer state (the frozen base is the model's own files), and the HF export
merges the adapter into the base (export.py), so vLLM loads the result like any checkpoint;
``lora.export_adapter=true`` also writes the adapter alone, in PEFT's format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig

from ssd.config import ConfigError, is_int, is_number, require

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer but the output head


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    dropout: float
    target_modules: str | tuple[str, ...]
    export_adapter: bool

    def peft_config(self) -> Any:
        from peft import LoraConfig

        targets = (self.target_modules if isinstance(self.target_modules, str)
                   else list(self.target_modules))
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets, bias="none")


def _is_module_list(value: Any) -> bool:
    return (isinstance(value, list | tuple | ListConfig) and len(value) > 0
            and all(isinstance(v, str) and v != "" for v in value))


def lora_settings(cfg: DictConfig) -> LoraSettings | None:
    """The ``lora`` group's values, checked; None for full fine-tuning (``lora.rank=0``)."""
    rank = require(cfg, "lora.rank", lambda v: is_int(v) and v >= 0,
                   "an integer >= 0 (0: full fine-tuning; r: train a rank-r adapter)")
    if rank == 0:
        return None
    alpha = require(cfg, "lora.alpha", lambda v: v is None or (is_number(v) and v > 0),
                    "> 0, or null for 2 x lora.rank (the update's scale alpha / rank is then 2)")
    dropout = require(cfg, "lora.dropout", lambda v: is_number(v) and 0 <= v < 1, "in [0, 1)")
    targets = require(cfg, "lora.target_modules",
                      lambda v: v == ALL_LINEAR or _is_module_list(v),
                      f"{ALL_LINEAR} or a non-empty list of linear layer names, e.g. "
                      "[q_proj, v_proj]")
    export_adapter = require(cfg, "lora.export_adapter", lambda v: isinstance(v, bool),
                             "true or false")
    return LoraSettings(rank=rank, alpha=float(2 * rank if alpha is None else alpha),
                        dropout=float(dropout),
                        target_modules=targets if isinstance(targets, str) else tuple(targets),
                        export_adapter=export_adapter)


def check_target_modules(settings: LoraSettings, model_path: str) -> None:
    """Named target modules must be linear layers of this model (checked on an empty model,
    before any process starts, rather than by PEFT inside the ranks)."""
    if isinstance(settings.target_modules, str):
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear)}
    unknown = [name for name in settings.target_modules if name not in linear]
    if unknown:
        raise ConfigError(f"lora.target_modules={list(settings.target_modules)}: the model has "
                          f"no linear layer named {unknown[0]}; its linear layers are "
                          f"{', '.join(sorted(linear))} (or use {ALL_LINEAR})")


def add_adapter(model: torch.nn.Module, settings: LoraSettings) -> PeftModel:
    """The model with a fresh adapter on its target layers, only the adapter trainable. The
    adapter's A matrices are drawn from torch's generator: every rank, seeded alike, draws the
    same ones."""
    from peft import get_peft_model

    return get_peft_model(model, settings.peft_config())


def adapted_from_state(state: dict[str, Any], config: Any, settings: LoraSettings
                       ) -> PeftModel:
    """The adapted model around a gathered state dict of one (export.py saves and merges it),
    built on the meta device so that it takes the gathered tensors."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        adapted = get_peft_model(AutoModelForCausalLM.from_config(config),
                                 settings.peft_config())
    # Merging adds the update into the base layers' weights in place, and on one process (CPU)
    # the gathered state is the training model's own tensors: those layers get copies, or every
    # export would add the adapter into the weights the training goes on with.
    adapted.load_state_dict({key: value.clone() if ".base_layer." in key else value
                             for key, value in state.items()}, assign=True, strict=True)
    # A gather from several processes gives a tied embedding and head as two tensors; merging
    # would then record them as untied in the config (PEFT compares their storage).
    adapted.get_base_model().tie_weights()
    return adapted
