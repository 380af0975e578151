"""SFT data: response-only labels, verbatim thinking blocks, packing, the step schedule."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from ssd.training.data import (
    CHAT_TEMPLATE,
    IGNORE_INDEX,
    SAMPLED_IDS,
    Example,
    LengthPolicy,
    SamplesError,
    apply_length_policy,
    best_fit_decreasing,
    collate,
    largest_token_id,
    pack_row,
    plan_step,
    read_training_set,
    render,
    step_indices,
    training_examples,
)
from ssd.training.module import ResponseLoss


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def conversation(answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "Add 2+2."},
            {"role": "assistant", "content": answer}]


def test_labels_cover_exactly_the_response_and_end_of_turn(tokenizer):
    example = render(tokenizer, conversation("```python\nprint(4)\n```"), tokenizer.eos_token_id)
    prompt = tokenizer.apply_chat_template(conversation("")[:-1], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    assert example.input_ids[:len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in example.labels[:len(prompt)])
    response = example.labels[len(prompt):]
    assert IGNORE_INDEX not in response
    assert response[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(response[:-1]) == "```python\nprint(4)\n```"


def test_thinking_block_is_kept_as_generated(tokenizer):
    answer = "<think>\nmaybe 4?\n</think>\n\n```python\nprint(4)\n```"
    example = render(tokenizer, conversation(answer), tokenizer.eos_token_id)
    supervised = [t for t in example.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(supervised[:-1]) == answer
    assert tokenizer.decode(supervised).count("<think>") == 1


def test_best_fit_decreasing_packs_tightly_and_keeps_every_item():
    lengths = [7, 5, 5, 4, 3, 2, 2, 1, 1]
    bins = best_fit_decreasing(lengths, capacity=10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 3  # 30 tokens into bins of 10: optimal
    with pytest.raises(ValueError, match="exceeds the bin capacity"):
        best_fit_decreasing([11], 10)


def test_step_schedule_is_deterministic_and_covers_each_epoch():
    steps = [step_indices(10, 4, step, seed=3) for step in range(5)]
    assert steps == [step_indices(10, 4, step, seed=3) for step in range(5)]
    flat = [i for s in steps for i in s]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert step_indices(10, 4, 0, seed=4) != steps[0]


def test_ranks_share_the_step_without_overlap():
    examples = [Example(list(range(n)), [1] * n) for n in (9, 3, 7, 2, 5, 6, 1, 4)]
    indices = list(range(8))
    plans = [plan_step(examples, indices, packing=True, max_seq_len=10, micro_batch_tokens=10,
                       rank=r, world_size=2, pad_id=0) for r in range(2)]
    assert len(plans[0].micro_batches) == len(plans[1].micro_batches)
    real = Counter()
    for plan in plans:
        for micro in plan.micro_batches:
            real[int((micro["labels"] != IGNORE_INDEX).sum())] += 1
    assert sum(k * v for k, v in real.items()) == 37  # every token exactly once
    assert plans[0].label_tokens == plans[1].label_tokens == 37 - 8  # first tokens unpredicted
    assert plans[0].tokens == plans[1].tokens == 37


def test_packing_raises_the_useful_token_fraction_on_skewed_lengths():
    lengths = [400, 30, 25, 20, 380, 15, 10, 12, 350, 8, 9, 11]
    examples = [Example([1] * n, [1] * n) for n in lengths]
    indices = list(range(len(lengths)))
    common = dict(max_seq_len=512, rank=0, world_size=1, pad_id=0)
    packed = plan_step(examples, indices, packing=True, micro_batch_tokens=512, **common)
    padded = plan_step(examples, indices, packing=False, micro_batch_tokens=4 * 512, **common)
    assert packed.tokens / packed.padded_tokens >= 0.95
    assert padded.tokens / padded.padded_tokens < 0.8  # even with length-sorted micro-batches


def test_micro_batches_fill_a_token_budget_and_ranks_run_the_same_number():
    """Rows are grouped within micro_batch_tokens (rows x the longest row): a long row alone,
    short rows together; no micro-batch exceeds the budget unless one row does; every rank runs
    the same number of micro-batches; every token is trained exactly once."""
    lengths = [1000, 990, 120, 100, 90, 60, 40, 30, 20, 10, 1024]
    examples = [Example([1] * n, [1] * n) for n in lengths]
    indices = list(range(len(lengths)))
    plans = [plan_step(examples, indices, packing=False, max_seq_len=1024,
                       micro_batch_tokens=1024, rank=r, world_size=2, pad_id=0) for r in (0, 1)]
    assert len(plans[0].micro_batches) == len(plans[1].micro_batches)
    shapes = [tuple(m["input_ids"].shape) for p in plans for m in p.micro_batches]
    assert all(rows * width <= 1024 for rows, width in shapes)
    assert any(rows > 1 for rows, _ in shapes) and (1, 1024) in shapes
    trained = sum(int((m["labels"] != IGNORE_INDEX).sum()) for p in plans
                  for m in p.micro_batches)
    assert trained == sum(lengths)
    assert plans[0].label_tokens == sum(lengths) - len(lengths)


def test_overlong_samples_are_counted_never_silent():
    examples = [Example([1] * n, [1] * n) for n in (5, 12, 20)]
    kept, counts = apply_length_policy(examples, LengthPolicy(10, "truncate"))
    assert [len(e) for e in kept] == [5, 10, 10] and counts == {"truncated": 2, "dropped": 0}
    kept, counts = apply_length_policy(examples, LengthPolicy(10, "drop"))
    assert [len(e) for e in kept] == [5] and counts == {"truncated": 0, "dropped": 2}


def test_packed_loss_equals_the_sum_of_per_sequence_losses(tiny_model, tokenizer):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = ResponseLoss(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32))
    answers = ["```python\nprint(4)\n```", "x = int(input())\nprint(x * 2)", "a\nb\nc"]
    examples = [render(tokenizer, conversation(a), tokenizer.eos_token_id) for a in answers]
    with torch.no_grad():
        separate = sum(float(model(**collate([pack_row([e])], pad_id=0))) for e in examples)
        packed = float(model(**collate([pack_row(examples)], pad_id=0)))
        padded = float(model(**collate([pack_row(examples[:2]), pack_row(examples[2:])],
                                       pad_id=0)))
    # Compared as the mean token loss (what training minimises), to 1e-5 in float32.
    label_tokens = sum(sum(t != IGNORE_INDEX for t in e.labels[1:]) for e in examples)
    assert packed / label_tokens == pytest.approx(separate / label_tokens, abs=1e-5, rel=0)
    assert padded / label_tokens == pytest.approx(separate / label_tokens, abs=1e-5, rel=0)
    # ...and packing is not a no-op: without per-sequence position ids the loss changes.
    row = collate([pack_row(examples)], pad_id=0)
    row["position_ids"] = torch.arange(row["input_ids"].shape[1]).unsqueeze(0)
    with torch.no_grad():
        leaky = float(model(**row))
    assert abs(leaky - separate) / label_tokens > 1e-3


def test_bad_training_sets(tmp_path):
    with pytest.raises(SamplesError, match="no such file"):
        read_training_set(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SamplesError, match="holds no samples"):
        read_training_set(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": conversation("x\ny")}) + "\n{oops\n")
    with pytest.raises(SamplesError, match="line 2 is not valid JSON"):
        read_training_set(broken)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"messages": conversation("x")[:2]}) + "\n")
    with pytest.raises(SamplesError, match=r"line 1 has neither token ids .* nor chat 'messages'"):
        read_training_set(wrong)
    no_reason = tmp_path / "no_reason.jsonl"
    no_reason.write_text(json.dumps({"prompt_token_ids": [1], "completion_token_ids": [2]}))
    with pytest.raises(SamplesError, match="line 1 has neither token ids"):
        read_training_set(no_reason)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(sampled([1, 2], [3], "stop")) + "\n"
                     + json.dumps({"messages": conversation("x\ny")}) + "\n")
    with pytest.raises(SamplesError, match="line 2 mixes token-id and chat-messages records"):
        read_training_set(mixed)


def sampled(prompt: list[int], completion: list[int], finish: str) -> dict:
    return {"prompt_token_ids": prompt, "completion_token_ids": completion,
            "finish_reason": finish, "messages": conversation("text for people")}


def test_sampled_ids_are_trained_as_they_are_end_of_turn_only_where_sampled(tmp_path, tokenizer):
    eot = tokenizer.eos_token_id
    path = tmp_path / "train.jsonl"
    records = [sampled([7, 8, 9], [30, 31, eot], "stop"), sampled([7, 8], [40, 41, 42], "length")]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    training_set = read_training_set(path)
    assert training_set.tokens == SAMPLED_IDS
    examples, summary = training_examples(training_set, tokenizer)
    assert summary == {"tokens": SAMPLED_IDS, "samples": 2, "ended": 1, "open": 1}
    assert examples[0].input_ids == [7, 8, 9, 30, 31, eot]
    assert examples[0].labels == [IGNORE_INDEX] * 3 + [30, 31, eot]
    assert examples[1].input_ids == [7, 8, 40, 41, 42]  # cut: no end-of-turn appended
    assert examples[1].labels == [IGNORE_INDEX] * 2 + [40, 41, 42]
    assert largest_token_id(training_set) == max(42, eot)


def test_chat_messages_sets_are_rendered_and_say_so(tmp_path, tokenizer):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": conversation("x\ny")}) + "\n")
    training_set = read_training_set(path)
    examples, summary = training_examples(training_set, tokenizer)
    assert summary == {"tokens": CHAT_TEMPLATE, "samples": 1, "ended": 1, "open": 0}
    assert examples[0] == render(tokenizer, conversation("x\ny"), tokenizer.eos_token_id)
    assert largest_token_id(training_set) == -1
