"""Reference decoding: temperature, then top-k, then top-p (then min-p), as vLLM samples.

This is the paper's decoding operator (Appendix A) written as pure, batched torch functions,
so that the rest of the project (tests against vLLM, the toy simulation, the token-distribution
analyses) shares one definition of the retained support S and the renormalised target q_S.

Given raw logits z (shape ``[batch, vocab]``) and per-row parameters:

1. **Temperature.** ``z / T``. After a softmax this is Temper_T[p](v) = p(v)^(1/T) / sum p^(1/T).
2. **Top-k.** Keep every token whose tempered logit is >= the k-th largest one (vLLM compares
   with ``<`` against the k-th sorted value, so ties at the boundary survive). ``top_k <= 0`` or
   ``top_k >= vocab`` disables it.
3. **Top-p.** On the top-k survivors, renormalise, sort ascending and drop the tokens whose
   ascending cumulative mass is ``<= 1 - top_p``; the most probable token always survives. This
   keeps the smallest prefix of the ranking whose mass reaches ``top_p`` (up to float rounding at
   the exact boundary). ``top_p >= 1`` disables it.
4. **Min-p** (optional, not used in the paper). vLLM applies it as a logits processor *before*
   top-k/top-p, on the tempered distribution: drop tokens with probability below
   ``min_p * max_prob``.

The result is the retained support (a boolean mask) and q_S, the tempered distribution
renormalised on it; sampling from q_S is what vLLM's Gumbel-max step does.

All functions accept float32 or float64 tensors and never modify their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Below this temperature vLLM decodes greedily (its _SAMPLING_EPS).
GREEDY_EPS = 1e-5


@dataclass(frozen=True)
class Decoded:
    """What a decoding policy does to one batch of next-token distributions."""

    support: torch.Tensor  # bool [batch, vocab]: the retained support S
    probs: torch.Tensor  # [batch, vocab]: q_S, zero outside S, rows sum to 1

    @property
    def support_size(self) -> torch.Tensor:
        return self.support.sum(dim=-1)


def _per_row(value: float | torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or per-row parameter to shape ``[batch, 1]``."""
    tensor = torch.as_tensor(value, dtype=logits.dtype, device=logits.device)
    return tensor.reshape(-1, 1).expand(logits.shape[0], 1)


def apply_temperature(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """z / T. Rows with T below ``GREEDY_EPS`` become a one-hot on the argmax (greedy)."""
    t = _per_row(temperature, logits)
    greedy = t < GREEDY_EPS
    scaled = logits / torch.where(greedy, torch.ones_like(t), t)
    if greedy.any():
        one_hot = torch.full_like(logits, float("-inf"))
        one_hot.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 0.0)
        scaled = torch.where(greedy, one_hot, scaled)
    return scaled


def top_k_mask(logits: torch.Tensor, top_k: int | torch.Tensor) -> torch.Tensor:
    """Tokens that survive top-k on (tempered) logits; ties with the k-th value survive."""
    vocab = logits.shape[-1]
    k = torch.as_tensor(top_k, device=logits.device).reshape(-1).expand(logits.shape[0])
    disabled = (k <= 0) | (k >= vocab)
    k = torch.where(disabled, torch.full_like(k, vocab), k).long()
    sorted_desc = logits.sort(dim=-1, descending=True).values
    kth_value = sorted_desc.gather(-1, (k - 1).unsqueeze(-1))
    return logits >= kth_value


def top_p_mask(logits: torch.Tensor, top_p: float | torch.Tensor) -> torch.Tensor:
    """Tokens that survive top-p on (tempered, top-k-masked) logits: vLLM's ascending rule."""
    p = _per_row(top_p, logits)
    sorted_logits, order = logits.sort(dim=-1, descending=False)
    ascending_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = ascending_mass <= 1 - p
    drop_sorted[:, -1] = False  # the most probable token always survives
    drop_sorted &= (p < 1).expand_as(drop_sorted)
    keep = torch.empty_like(drop_sorted)
    keep.scatter_(-1, order, ~drop_sorted)
    return keep


def min_p_mask(logits: torch.Tensor, min_p: float | torch.Tensor) -> torch.Tensor:
    """Tokens whose probability is at least ``min_p`` times the most probable one's."""
    probs = logits.softmax(dim=-1)
    threshold = _per_row(min_p, logits) * probs.max(dim=-1, keepdim=True).values
    return probs >= threshold


def decode(
    logits: torch.Tensor,
    temperature: float | torch.Tensor,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    min_p: float | torch.Tensor = 0.0,
) -> Decoded:
    """Apply temperature → (min-p) → top-k → top-p to ``logits`` of shape [batch, vocab] or [vocab].

    Returns the retained support and the renormalised distribution q_S on it.
    """
    squeeze = logits.dim() == 1
    z = logits.unsqueeze(0) if squeeze else logits
    z = apply_temperature(z, temperature)
    neg_inf = torch.tensor(float("-inf"), dtype=z.dtype, device=z.device)
    z = torch.where(min_p_mask(z, min_p), z, neg_inf)
    z = torch.where(top_k_mask(z, top_k), z, neg_inf)
    z = torch.where(top_p_mask(z, top_p), z, neg_inf)
    support = torch.isfinite(z)
    probs = z.softmax(dim=-1)
    if squeeze:
        return Decoded(support=support[0], probs=probs[0])
    return Decoded(support=support, probs=probs)


def decode_probs(
    probs: torch.Tensor,
    temperature: float | torch.Tensor,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    min_p: float | torch.Tensor = 0.0,
) -> Decoded:
    """``decode`` for a model given as probabilities: log p plays the role of the logits."""
    return decode(probs.log(), temperature, top_k=top_k, top_p=top_p, min_p=min_p)
