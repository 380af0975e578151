"""The SFT LightningModule: cross-entropy on response tokens (paper Eq. 2), FSDP2, AdamW, cosine.

Optimisation is manual because a step's work is not a fixed number of equal micro-batches: the
step's ``global_batch_size`` sequences are packed into however many rows they need. Each rank
runs its micro-batches, scaling every micro-batch's summed token loss by
``world_size / label_tokens_in_global_batch``; FSDP averages gradients over ranks, so the update
is exactly the gradient of the mean token loss over the global batch, whatever the packing, the
number of ranks or the micro-batch size.

The loss is computed from the final hidden states in sequence chunks, each chunk's logits
recomputed in the backward pass, so a 65K-token row never materialises [65K x vocab] logits.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ssd.training.attention import PACKED_SDPA
from ssd.training.attention import register as register_packed_sdpa
from ssd.training.data import IGNORE_INDEX, StepBatch
from ssd.training.lora import LoraSettings, add_adapter

LOSS_CHUNK_TOKENS = 4096
# The MLP works token by token, so a long row goes through it in pieces of this many tokens: its
# three intermediates ([tokens x intermediate size] each) then stay small enough for the CPU
# allocator to reuse (glibc returns blocks over 32 MB to the kernel, and re-faults them in) and
# for the caches, instead of growing with the row. Exact; a no-op for rows this short. Measured
# (SmolLM2, a 16K-token row packed from 16 x 1K samples, forward + backward): 95.8 s without it,
# 84.2 s with it, against 16 x 5.0 s for the samples one by one.
MLP_CHUNK_TOKENS = 4096


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, peak: float,
                       floor: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def _chunk_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def _token_chunked(forward: Any, hidden: torch.Tensor) -> torch.Tensor:
    if hidden.shape[1] <= MLP_CHUNK_TOKENS:
        return forward(hidden)
    return torch.cat([forward(piece) for piece in hidden.split(MLP_CHUNK_TOKENS, dim=1)], dim=1)


def chunk_mlps(model: torch.nn.Module) -> None:
    """Run each decoder layer's MLP over a long row in ``MLP_CHUNK_TOKENS`` pieces. The forward
    is replaced on the instance, so parameter names (checkpoints, exports) are unchanged."""
    for layer in model.get_decoder().layers:
        layer.mlp.forward = functools.partial(_token_chunked, layer.mlp.forward)


class ResponseLoss(torch.nn.Module):
    """An HF causal LM and its summed response-token loss, as one module.

    FSDP2 gathers a unit's parameters in the hooks of that unit's ``forward``: calling the
    decoder and the head separately would bypass the root's hooks. With this wrapper as the
    root, the embedding, final norm and (possibly tied) head are all gathered for ``forward``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        """Sum over supervised tokens of -log p(token | its own sequence's prefix)."""
        hidden = self.model.get_decoder()(input_ids=input_ids, position_ids=position_ids,
                                          use_cache=False).last_hidden_state
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        targets = labels[:, 1:].reshape(-1)
        head = self.model.get_output_embeddings()
        total = hidden.new_zeros((), dtype=torch.float32)
        # Every chunk goes through the head, even one with no supervised token (a prompt, or an
        # empty row that keeps ranks in step): every rank must produce gradients for the same
        # parameters, or FSDP's gradient reduction would not match across ranks.
        for start in range(0, targets.numel(), LOSS_CHUNK_TOKENS):
            piece = slice(start, start + LOSS_CHUNK_TOKENS)
            total = total + checkpoint(_chunk_loss, hidden[piece], targets[piece], head,
                                       use_reentrant=False)
        return total


class SFTModule(L.LightningModule):
    def __init__(self, model_path: str, optimizer: dict[str, Any], max_steps: int,
                 gradient_clip_val: float | None, activation_checkpointing: bool,
                 bf16: bool, attention: str = PACKED_SDPA,
                 lora: LoraSettings | None = None) -> None:
        super().__init__()
        self.model_path = model_path
        self.optimizer_cfg = optimizer
        self.max_steps = max_steps
        self.gradient_clip_val = gradient_clip_val
        self.activation_checkpointing = activation_checkpointing
        self.bf16 = bf16
        self.attention = attention  # a transformers attn_implementation (attention.py)
        self.lora = lora  # None: full fine-tuning
        self.automatic_optimization = False
        self.model: ResponseLoss | None = None
        self._last_step_end: float | None = None
        self.matmul_dtype: str | None = None  # what the first step's matmuls computed in

    def load_model(self) -> torch.nn.Module:
        """The HF causal LM to train, in fp32, from ``model_path`` (bench/gpu_check.py overrides
        this to build one from a config alone, random weights and no files)."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32,
                                                    attn_implementation=self.attention)

    @property
    def sharded(self) -> bool:
        """FSDP2 shards the model only across several processes (one process: no copies)."""
        return self.device_mesh["data_parallel"].size() > 1

    def configure_model(self) -> None:
        """Load the HF model (with a fresh LoRA adapter if set); on several processes, shard it
        with FSDP2: each decoder layer, then the root."""
        if self.model is not None:
            return
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        register_packed_sdpa()
        model = self.load_model()
        model.config.use_cache = False
        chunk_mlps(model)
        if self.activation_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.lora is not None:
            model = add_adapter(model, self.lora)
        model.train()  # from_pretrained returns eval mode
        self.model = ResponseLoss(model)
        if not self.sharded:
            # FSDP2 on one process would still copy every parameter into an unsharded buffer
            # for each forward and backward, and every gradient out (~7 % of a step). The
            # checkpoints resume either way (strategy.py).
            return
        mesh = self.device_mesh["data_parallel"]
        # bf16 compute and all-gathers, fp32 master weights and gradient reduction.
        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if self.bf16 else MixedPrecisionPolicy())
        for layer in model.get_decoder().layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(self.model, mesh=mesh, mp_policy=policy)

    def configure_optimizers(self) -> Any:
        o = self.optimizer_cfg
        # Under LoRA only the adapter trains; in full fine-tuning this is every parameter.
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=o["lr"],
                                      betas=tuple(o["betas"]), weight_decay=o["weight_decay"],
                                      eps=o["eps"])
        # LambdaLR multiplies the base lr: express the schedule as a fraction of the peak.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_with_warmup(
            step, o["warmup_steps"], self.max_steps, 1.0, o["min_lr"] / o["lr"]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                         "interval": "step"}}

    def training_step(self, batch: StepBatch, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        schedule = self.lr_schedulers()
        started = time.perf_counter()
        scale = self.trainer.world_size / max(batch.label_tokens, 1)
        loss_sum = torch.zeros((), dtype=torch.float32)
        # bf16 on one process (no FSDP2 to cast) is autocast: fp32 weights, bf16 matmuls.
        autocast = self.bf16 and not self.sharded
        watch = self._watch_matmul_dtype() if self.matmul_dtype is None else None
        for micro in batch.micro_batches:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = self.model(**micro)
            self.manual_backward(loss * scale)
            loss_sum += loss.detach().float().cpu()
        if watch is not None:
            watch.remove()
        grad_norm = self._clip_and_norm()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        # Every rank's share of the mean loss; their sum over ranks is the global mean.
        mean_loss = self.all_reduce_sum(loss_sum) / max(batch.label_tokens, 1)
        # Wall time from the previous step's end: data, hooks and logging count too.
        now = time.perf_counter()
        seconds = now - (self._last_step_end or started)
        self._last_step_end = now
        self.log_dict({
            "train/loss": mean_loss,
            "train/lr": lr,
            "train/grad_norm": grad_norm,
            "train/tokens_per_s": batch.tokens / seconds,
            "train/padding_fraction": 1 - batch.tokens / max(batch.padded_tokens, 1),
            "train/label_tokens": float(batch.label_tokens),
        }, on_step=True, prog_bar=True, batch_size=1)
        return mean_loss

    def _watch_matmul_dtype(self) -> Any:
        """Record the dtype the first linear layer's output has (bf16 under autocast or FSDP2's
        bf16 policy, else fp32): the precision the matmuls ran in, as observed, for run.json."""
        linear = next(m for m in self.model.modules() if isinstance(m, torch.nn.Linear))

        def record(module: Any, inputs: Any, output: torch.Tensor) -> None:
            self.matmul_dtype = self.matmul_dtype or str(output.dtype).removeprefix("torch.")

        return linear.register_forward_hook(record)

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value.to(self.device), reduce_op="sum").cpu()

    def _clip_and_norm(self) -> float:
        """Global gradient norm (across shards), clipped to ``gradient_clip_val`` if set."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.gradient_clip_val if self.gradient_clip_val else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return float(norm)
