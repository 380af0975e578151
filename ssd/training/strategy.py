"""Lightning's ``ModelParallelStrategy`` with checkpoints that resume on any number of processes.

The module (module.py) shards itself with FSDP2 when there are several processes and stays a
plain module on one, where sharding would only cost copies. Lightning saves both alike, as a
distributed (DCP) checkpoint: a folder of tensors indexed by parameter name and global shape,
plus ``meta.pt`` (loops, scheduler, written last by rank 0). Lightning's loader, however, only
accepts a module holding DTensors; this one loads into either kind, and since DCP reshards on
load, a checkpoint written by N processes resumes on M.

Frozen parameters (a LoRA run's base) are left out of checkpoints: they are the model's own
files, loaded again on resume, so a checkpoint holds the adapter and its optimizer state only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy

# Lightning writes a checkpoint's non-tensor state into this file last, on rank 0: a checkpoint
# folder without it was cut short.
CHECKPOINT_COMPLETE_FILE = "meta.pt"


def trainable_state(module: torch.nn.Module, **options: Any) -> dict[str, Any]:
    """``get_model_state_dict`` without the frozen parameters, under every name they have (a
    frozen embedding tied to the output head is frozen under both names)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    frozen = {name for name, param in module.named_parameters(remove_duplicate=False)
              if not param.requires_grad}
    state = get_model_state_dict(module, options=StateDictOptions(**options))
    return {key: value for key, value in state.items() if key not in frozen}


class DataParallelStrategy(ModelParallelStrategy):
    """Data-parallel over every process (tensor-parallel size 1); FSDP2 is the module's choice."""

    def __init__(self, world_size: int) -> None:
        super().__init__(data_parallel_size=world_size, tensor_parallel_size=1)

    def lightning_module_state_dict(self) -> dict[str, Any]:
        assert self.model is not None
        return trainable_state(self.model, full_state_dict=not self._save_distributed_checkpoint,
                               cpu_offload=True)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        path = Path(self.broadcast(checkpoint_path))
        assert self.model is not None
        # Keys as Lightning's save wrote them (strategy.save_checkpoint); DCP fills the given
        # tensors (plain or sharded) in place from whatever layout was saved.
        model_state = {"state_dict": trainable_state(self.model)}
        dcp.load(model_state, checkpoint_id=path)
        # Not strict only because the frozen parameters are left out on purpose (they are the
        # model's files): dcp.load fills exactly the keys asked for, or fails.
        set_model_state_dict(self.model, model_state["state_dict"],
                             options=StateDictOptions(strict=False))
        for index, optimizer in enumerate(self.optimizers):
            key = f"optimizer_{index}"
            optimizer_state = {key: get_optimizer_state_dict(self.model, optimizer)}
            dcp.load(optimizer_state, checkpoint_id=path)
            set_optimizer_state_dict(self.model, optimizer, optimizer_state[key])
        return torch.load(path / CHECKPOINT_COMPLETE_FILE, weights_only=weights_only)
