"""Attention for packed rows: every implementation offered on CPU gives the loss and gradients of
the sequences trained one by one, and the per-sequence one never builds an L x L tensor."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ssd.training import attention
from ssd.training.data import IGNORE_INDEX, Example, collate, pack_row
from ssd.training.module import ResponseLoss

CPU_IMPLEMENTATIONS = [attention.PACKED_SDPA, "sdpa", "eager"]


def loss_module(tiny_model: str, implementation: str) -> ResponseLoss:
    from transformers import AutoModelForCausalLM

    attention.register()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                 attn_implementation=implementation)
    model.config.use_cache = False
    return ResponseLoss(model)


def examples(lengths: list[int], seed: int = 0) -> list[Example]:
    generator = torch.Generator().manual_seed(seed)
    found = []
    for length in lengths:
        ids = torch.randint(3, 2000, (length,), generator=generator).tolist()
        prompt = length // 3
        found.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return found


def loss_and_grads(model: ResponseLoss, batches: list[dict[str, torch.Tensor]]
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    total = sum(model(**batch) for batch in batches)
    total.backward()
    return float(total.detach()), {name: p.grad.clone() for name, p in model.named_parameters()
                          if p.grad is not None}


@pytest.mark.parametrize("implementation", CPU_IMPLEMENTATIONS)
def test_packed_rows_give_the_loss_and_gradients_of_separate_sequences(tiny_model,
                                                                       implementation):
    """Summed token loss and every gradient, fp32: one packed row, two padded packed rows, and
    each sequence alone agree to 1e-5 (relative to the largest gradient entry)."""
    model = loss_module(tiny_model, implementation)
    items = examples([37, 64, 5, 90, 18])
    separate_loss, separate = loss_and_grads(model, [collate([pack_row([e])], pad_id=0)
                                                     for e in items])
    for batch in ([pack_row(items)], [pack_row(items[:2]), pack_row(items[2:])]):
        loss, grads = loss_and_grads(model, [collate(batch, pad_id=0)])
        assert loss == pytest.approx(separate_loss, rel=1e-5)
        assert grads.keys() == separate.keys()
        scale = max(float(g.abs().max()) for g in separate.values())
        assert max(float((grads[k] - separate[k]).abs().max()) for k in grads) <= 1e-5 * scale


def test_positions_that_do_not_restart_are_one_sequence(tiny_model):
    """Packing is what the position ids say: without restarts the row is one long sequence, and
    the loss changes (the check above is not vacuous)."""
    model = loss_module(tiny_model, attention.PACKED_SDPA)
    row = collate([pack_row(examples([30, 40]))], pad_id=0)
    with torch.no_grad():
        packed = float(model(**row))
        row["position_ids"] = torch.arange(row["input_ids"].shape[1]).unsqueeze(0)
        joined = float(model(**row))
    assert abs(packed - joined) > 1e-3 * abs(packed)


def test_sequence_starts_follow_the_position_ids():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1, 2, 3]])
    assert attention.sequence_starts(positions) == [[0, 3, 5, 6, 10]]
    assert attention.attention_implementation("auto", gpu=False) == attention.PACKED_SDPA
    assert attention.attention_implementation("sdpa", gpu=True) == "sdpa"


class SquareTensors(TorchDispatchMode):
    """Records the shape of every tensor an op produces that has two dimensions of size L."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length
        self.found: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, tuple | list) else [out]:
            if isinstance(tensor, torch.Tensor) and list(tensor.shape).count(self.length) >= 2:
                self.found.append((str(func), tuple(tensor.shape)))
        return out


@pytest.mark.parametrize(("implementation", "square"), [(attention.PACKED_SDPA, False),
                                                        ("sdpa", True)])
def test_no_row_by_row_tensor_is_built_for_a_long_packed_row(tiny_model, implementation, square):
    """Forward and backward of a 1,000-token row packed from 8 sequences: the per-sequence
    attention produces no tensor with two dimensions of the row's length (no mask, no scores
    over the row); transformers' default does (the mask), which shows the check can fail.
    1,000 is no other dimension of the tiny model (hidden 128, vocabulary 2,048, heads 2)."""
    length = 1000
    model = loss_module(tiny_model, implementation)
    row = collate([pack_row(examples([125] * 8))], pad_id=0)
    assert row["input_ids"].shape[1] == length
    with SquareTensors(length) as seen:
        model(**row).backward()
    assert bool(seen.found) == square, seen.found[:3]


@pytest.mark.slow
def test_flex_attention_forward_matches_on_cpu(tiny_model):
    """FlexAttention (offered on GPUs) has no backward on CPU in torch 2.13: its loss is checked
    here, its gradients only where a GPU runs it. Slow: it compiles its kernel (~10 s)."""
    items = examples([37, 64, 5])
    model = loss_module(tiny_model, "flex_attention")
    with torch.no_grad():
        separate = sum(float(model(**collate([pack_row([e])], pad_id=0))) for e in items)
        packed = float(model(**collate([pack_row(items)], pad_id=0)))
    assert packed == pytest.approx(separate, rel=1e-5)


def test_a_long_row_through_the_mlp_in_pieces_gives_the_same_loss_and_gradients(
        tiny_model, monkeypatch):
    """chunk_mlps runs each MLP over a long row in pieces (here of 16 tokens): exact, and the
    parameter names (checkpoints, exports) are unchanged."""
    from ssd.training import module

    row = collate([pack_row(examples([37, 64, 5]))], pad_id=0)
    whole = loss_module(tiny_model, attention.PACKED_SDPA)
    names = [name for name, _ in whole.named_parameters()]
    expected_loss, expected = loss_and_grads(whole, [row])
    monkeypatch.setattr(module, "MLP_CHUNK_TOKENS", 16)
    chunked = loss_module(tiny_model, attention.PACKED_SDPA)
    calls = []
    mlp = chunked.model.get_decoder().layers[0].mlp
    mlp.gate_proj.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[1]))
    module.chunk_mlps(chunked.model)
    assert [name for name, _ in chunked.named_parameters()] == names
    loss, grads = loss_and_grads(chunked, [row])
    assert calls == [16] * 6 + [10]  # 106 tokens in pieces of 16
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    # weight gradients summed over the pieces: another float summation order (fp32, 1e-5)
    scale = max(float(g.abs().max()) for g in expected.values())
    assert max(float((grads[k] - expected[k]).abs().max()) for k in grads) <= 1e-5 * scale
