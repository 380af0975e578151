"""The reference decoding math (ssd.decoding) on hand-checked and brute-forced cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from ssd.decoding import decode, decode_probs, top_p_mask


def test_temperature_is_a_power_transform():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    for t in (0.5, 1.0, 2.0):
        q = decode_probs(p, t).probs
        expected = p ** (1 / t) / (p ** (1 / t)).sum()
        torch.testing.assert_close(q, expected, rtol=0, atol=1e-12)


def test_top_k_keeps_k_largest_tempered_and_ties_at_the_boundary():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    out = decode(logits, 1.0, top_k=2)
    assert out.support.tolist() == [[True, False, True, False], [True, True, True, False]]


@pytest.mark.parametrize("disabled", [0, 4, 100])
def test_top_k_disabled(disabled):
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert decode(logits, 1.0, top_k=disabled).support.all()


def test_top_p_keeps_smallest_prefix_reaching_p():
    p = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
    assert decode_probs(p, 1.0, top_p=0.7).support.tolist() == [True, True, False, False]
    assert decode_probs(p, 1.0, top_p=0.74).support.tolist() == [True, True, False, False]
    assert decode_probs(p, 1.0, top_p=0.76).support.tolist() == [True, True, True, False]
    # the most probable token always survives
    assert decode_probs(p, 1.0, top_p=0.01).support.tolist() == [True, False, False, False]
    q = decode_probs(p, 1.0, top_p=0.7).probs
    torch.testing.assert_close(q, torch.tensor([2 / 3, 1 / 3, 0, 0], dtype=torch.float64))


def brute_force_top_p(probs: torch.Tensor, top_p: float) -> set[int]:
    """Smallest set of highest-probability tokens whose mass reaches top_p."""
    order = probs.argsort(descending=True).tolist()
    for size in range(1, len(order) + 1):
        if probs[order[:size]].sum() >= top_p - 1e-12:
            return set(order[:size])
    return set(order)


def test_top_p_matches_brute_force_on_random_distributions():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        probs = torch.rand(12, generator=generator, dtype=torch.float64) ** 3
        probs /= probs.sum()
        top_p = float(torch.rand(1, generator=generator)) * 0.98 + 0.01
        keep = top_p_mask(probs.log().unsqueeze(0), top_p)[0]
        assert set(keep.nonzero().flatten().tolist()) == brute_force_top_p(probs, top_p)


def test_order_is_temperature_then_top_k_then_top_p():
    # Temperature changes top-p's nucleus (it is applied first), never top-k's ranking.
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    cold = decode_probs(p, 0.5, top_k=3, top_p=0.8)
    hot = decode_probs(p, 2.0, top_k=3, top_p=0.8)
    assert cold.support.tolist() == [True, True, False, False]
    assert hot.support.tolist() == [True, True, True, False]
    tempered = p ** 0.5 / (p ** 0.5).sum()
    head = tempered[:3] / tempered[:3].sum()
    torch.testing.assert_close(hot.probs[:3], head, rtol=0, atol=1e-12)


def test_min_p_relative_to_the_most_probable_token():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    assert decode_probs(p, 1.0, min_p=0.2).support.tolist() == [True, True, True, False]


def test_batched_per_row_parameters_match_row_by_row():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 50, generator=generator, dtype=torch.float64) * 3
    temps = torch.tensor([0.3, 0.7, 1.0, 1.3, 2.0, 0.9], dtype=torch.float64)
    ks = torch.tensor([0, 5, 20, 1, 50, 3])
    ps = torch.tensor([1.0, 0.9, 0.5, 0.8, 0.95, 1.0], dtype=torch.float64)
    batched = decode(logits, temps, top_k=ks, top_p=ps)
    for row, (t, k, p) in enumerate(itertools.zip_longest(temps, ks, ps)):
        single = decode(logits[row], float(t), top_k=int(k), top_p=float(p))
        assert torch.equal(batched.support[row], single.support)
        torch.testing.assert_close(batched.probs[row], single.probs, rtol=0, atol=1e-12)
    assert torch.allclose(batched.probs.sum(-1), torch.ones(6, dtype=torch.float64))
    assert ((batched.probs > 0) == batched.support).all()


def test_greedy_below_epsilon_and_inputs_untouched():
    logits = torch.tensor([[0.1, 2.0, 0.5]])
    before = logits.clone()
    out = decode(logits, 0.0, top_k=0, top_p=1.0)
    assert out.support.tolist() == [[False, True, False]]
    assert torch.equal(logits, before)
