"""Attention for packed rows that stays inside each sequence: no L x L mask, no cross-sequence work.

A packed row holds several sequences back to back, its position ids restarting at 0 at every
sequence (data.py). transformers' default ``sdpa`` path detects the packing from those position
ids and materialises a dense (rows x 1 x L x L) boolean mask, then runs dense attention over it:
every pair of tokens in the row is computed, although only pairs inside one sequence count. For a
65,536-token row that is a 4 GiB mask and ~20x the attention work needed for ~3K-token samples.

``trainer.attention`` chooses one implementation (``attention_implementation`` resolves ``auto``):

* ``packed_sdpa`` (this module; the CPU default): one causal ``scaled_dot_product_attention`` call
  per sequence, on views of the row. Registered with transformers as an attention function, so
  no mask is ever built (a registered function with no mask function gets ``attention_mask``
  None). PyTorch's fused kernels (flash on CPU and CUDA) then keep memory linear in the sequence
  length, and nothing is computed across sequences. Exact for any row layout.
* ``flex_attention`` (GPU): FlexAttention with a document block mask, which transformers builds
  from the packed position ids. No backward on CPU in torch 2.13.
* ``flash_attention_2`` (GPU, where the ``flash-attn`` package is installed): its varlen kernels,
  which transformers drives from the packed position ids.
* ``sdpa``: transformers' default, dense over the row: the baseline the others are measured
  against (``bench/long_rows.py``).
"""

from __future__ import annotations

import importlib.util
import itertools
from typing import Any

import torch
import torch.nn.functional as F

PACKED_SDPA = "packed_sdpa"
CHOICES = ("auto", PACKED_SDPA, "flex_attention", "flash_attention_2", "sdpa")


def attention_implementation(choice: str, gpu: bool) -> str:
    """``auto``: flash-attention's varlen kernels on a GPU that has them, else the per-sequence
    calls (on CPU, and on GPUs without flash-attn: FlexAttention compiles per shape, which
    packed rows of varying lengths would pay at every step)."""
    if choice != "auto":
        return choice
    if gpu and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return PACKED_SDPA


def sequence_starts(position_ids: torch.Tensor) -> list[list[int]]:
    """For each row, the start of every sequence in it (where the position id is 0), and the
    row's length last: ``[[0, 5, 9, 12]]`` for sequences of 5, 4 and 3 tokens."""
    rows = []
    for row in position_ids.tolist():
        rows.append([i for i, position in enumerate(row) if position == 0] + [len(row)])
    return rows


def packed_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, attention_mask: torch.Tensor | None,
                        dropout: float = 0.0, scaling: float | None = None,
                        position_ids: torch.Tensor | None = None, **kwargs: Any
                        ) -> tuple[torch.Tensor, None]:
    """Causal attention within each sequence of each packed row.

    ``query`` is [batch, heads, L, head_dim] (key/value may have fewer heads: grouped-query
    attention); returns [batch, L, heads, head_dim] as transformers' attention functions do."""
    if attention_mask is not None:
        raise ValueError(f"{PACKED_SDPA} attention takes no mask: sequences are found from the "
                         "position ids of the packed row")
    if position_ids is None:
        raise ValueError(f"{PACKED_SDPA} attention needs the position ids of the packed rows")
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for row, starts in enumerate(sequence_starts(position_ids.expand(query.shape[0], -1))):
        # split, not slicing: each slice's backward would add a zero-filled gradient of the
        # whole row (O(sequences x L) per layer); split's backward concatenates the pieces.
        lengths = [b - a for a, b in itertools.pairwise(starts)]
        pieces = zip(*(t[row:row + 1].split(lengths, dim=2) for t in (query, key, value)),
                     strict=True)
        rows.append(torch.cat([
            F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling,
                                           is_causal=True, enable_gqa=gqa)
            for q, k, v in pieces], dim=2))
    # Not made contiguous here: the attention module reshapes (and copies) it right after.
    return torch.cat(rows).transpose(1, 2), None


def register() -> None:
    """Make ``packed_sdpa`` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
