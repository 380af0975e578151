"""The SFT data: the sampled token ids, masked to the response, packed, scheduled by step.

Tokens. A generate.py training set holds the prompt ids vLLM was given and the completion ids it
sampled; the example is exactly those ids (SSD is SFT on the model's own samples: re-tokenising
the text would train on a different id sequence wherever the sampled split is not the
tokenizer's canonical one). Labels are -100 on the prompt and the completion ids themselves on
the response, so an end-of-turn token is a label exactly when the model produced it
(``finish_reason == "stop"``); a sample cut at max_tokens is trained on as it is, open. A
training set written by another tool as chat ``messages`` text is rendered instead: the prompt
turns through the model's chat template (with the generation prompt), the response tokenised as
is plus the end-of-turn token. A thinking model's ``<think>`` block stays as generated either way.

Batching. One optimizer step consumes exactly ``global_batch_size`` sequences (paper: 32). Which
ones is a pure function of (seed, step), so the data position after a restart is just the step
counter. Within a step the sequences are packed best-fit-decreasing into bins of at most
``max_seq_len`` tokens; each bin is one row whose position ids restart at every sequence, so the
model's attention stays inside each sequence (``attention.py``: no mask over the row, no work
across sequences) and the summed loss of a packed row equals the sum of the per-sequence losses.
Rows are dealt to data-parallel ranks and grouped into micro-batches within a token budget
(``micro_batch_tokens``: several short rows together, a full row alone), so a mix of long and
short samples neither runs out of memory nor pads; every rank runs the same number of
micro-batches (collectives must match), topped up with empty ones if needed.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


class SamplesError(ValueError):
    """The training-samples file cannot be used; the message names the file, line and fix."""


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


SAMPLED_IDS = "sampled_ids"      # the token ids generate.py recorded
CHAT_TEMPLATE = "chat_template"  # chat messages rendered through the tokenizer


@dataclass(frozen=True)
class TrainingSet:
    """The records of a training set and which path turns them into tokens."""

    records: list[dict[str, Any]]
    tokens: str  # SAMPLED_IDS | CHAT_TEMPLATE


def _id_list(value: Any) -> bool:
    return isinstance(value, list) and all(type(i) is int and i >= 0 for i in value)


def _record_kind(record: Any) -> str | None:
    """SAMPLED_IDS, CHAT_TEMPLATE, or None when the record is neither."""
    if not isinstance(record, dict):
        return None
    if "completion_token_ids" in record or "prompt_token_ids" in record:
        ok = (_id_list(record.get("prompt_token_ids")) and record["prompt_token_ids"]
              and _id_list(record.get("completion_token_ids"))
              and isinstance(record.get("finish_reason"), str))
        return SAMPLED_IDS if ok else None
    messages = record.get("messages")
    if (isinstance(messages, list) and len(messages) >= 2 and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "assistant"):
        return CHAT_TEMPLATE
    return None


def read_training_set(path: Path) -> TrainingSet:
    """Every record of a generate.py ``train.jsonl`` (token ids), or of any chat JSONL."""
    if not path.is_file():
        raise SamplesError(f"data.samples={path}: no such file; point it at the train.jsonl "
                           "written by generate.py")
    records, kinds = [], set()
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SamplesError(f"data.samples={path}: line {number} is not valid JSON "
                                   f"({error.msg})") from None
            kind = _record_kind(record)
            if kind is None:
                raise SamplesError(
                    f"data.samples={path}: line {number} has neither token ids "
                    "(prompt_token_ids, completion_token_ids, finish_reason) nor chat "
                    "'messages' ending with an assistant turn")
            kinds.add(kind)
            if len(kinds) > 1:
                raise SamplesError(f"data.samples={path}: line {number} mixes token-id and "
                                   "chat-messages records; use one kind per file")
            records.append(record)
    if not records:
        raise SamplesError(f"data.samples={path}: the file holds no samples")
    return TrainingSet(records, kinds.pop())


def sampled_example(prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> Example:
    """The ids as sampled; loss on every completion id (end-of-turn included when sampled)."""
    return Example(input_ids=[*prompt_ids, *completion_ids],
                   labels=[IGNORE_INDEX] * len(prompt_ids) + list(completion_ids))


def render(tokenizer: Any, messages: list[dict[str, str]], end_of_turn_id: int) -> Example:
    """Prompt through the chat template, response verbatim plus end-of-turn; loss only on the
    response (chat-messages training sets, which carry no sampled ids)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    response = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    return sampled_example(prompt, [*response, end_of_turn_id])


def training_examples(training_set: TrainingSet, tokenizer: Any
                      ) -> tuple[list[Example], dict[str, Any]]:
    """The examples of a training set, and what the train record says about them: which path
    made the tokens, how many samples the model ended and how many were cut (trained open)."""
    records = training_set.records
    if training_set.tokens == SAMPLED_IDS:
        examples = [sampled_example(r["prompt_token_ids"], r["completion_token_ids"])
                    for r in records]
        finish = Counter(r["finish_reason"] for r in records)
        summary = {"tokens": SAMPLED_IDS, "samples": len(records), "ended": finish["stop"],
                   "open": finish["length"]}
    else:
        eot = tokenizer.eos_token_id
        examples = [render(tokenizer, r["messages"], eot) for r in records]
        summary = {"tokens": CHAT_TEMPLATE, "samples": len(records), "ended": len(records),
                   "open": 0}
    return examples, summary


def largest_token_id(training_set: TrainingSet) -> int:
    """The largest id a sampled-ids training set holds (-1 for chat messages)."""
    if training_set.tokens != SAMPLED_IDS:
        return -1
    return max(max([*r["prompt_token_ids"], *r["completion_token_ids"]])
               for r in training_set.records)


@dataclass(frozen=True)
class LengthPolicy:
    max_seq_len: int
    overlong: str  # "truncate" | "drop"


def apply_length_policy(examples: list[Example], policy: LengthPolicy
                        ) -> tuple[list[Example], dict[str, int]]:
    """Cut or drop examples longer than ``max_seq_len``; count what happened."""
    kept, counts = [], {"truncated": 0, "dropped": 0}
    for example in examples:
        if len(example) <= policy.max_seq_len:
            kept.append(example)
        elif policy.overlong == "drop":
            counts["dropped"] += 1
        else:
            counts["truncated"] += 1
            cut = policy.max_seq_len
            kept.append(Example(example.input_ids[:cut], example.labels[:cut]))
    return kept, counts


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack items (by index) into bins of ``capacity``: longest first, into the fullest bin that
    still fits. Returns the bins as lists of item indices."""
    bins: list[list[int]] = []
    # (remaining capacity, bin index), kept sorted so the tightest fit is a bisect away.
    free: list[tuple[int, int]] = []
    for item in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        size = lengths[item]
        if size > capacity:
            raise ValueError(f"item {item} of length {size} exceeds the bin capacity {capacity}")
        slot = bisect.bisect_left(free, (size, -1))
        if slot == len(free):
            bins.append([item])
            bisect.insort(free, (capacity - size, len(bins) - 1))
        else:
            remaining, index = free.pop(slot)
            bins[index].append(item)
            bisect.insort(free, (remaining - size, index))
    return bins


def step_indices(num_examples: int, global_batch_size: int, step: int, seed: int) -> list[int]:
    """The example indices of optimizer step ``step``: consecutive slices of per-epoch shuffles."""
    start = step * global_batch_size
    indices: list[int] = []
    while len(indices) < global_batch_size:
        position = start + len(indices)
        epoch, offset = divmod(position, num_examples)
        order = np.random.default_rng([seed, epoch]).permutation(num_examples)
        take = min(global_batch_size - len(indices), num_examples - offset)
        indices.extend(int(i) for i in order[offset:offset + take])
    return indices


@dataclass(frozen=True)
class Row:
    """One packed row: several sequences back to back."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]


def pack_row(examples: Sequence[Example]) -> Row:
    input_ids, labels, positions = [], [], []
    for example in examples:
        input_ids.extend(example.input_ids)
        labels.extend(example.labels)
        positions.extend(range(len(example)))
    return Row(input_ids, labels, positions)


def collate(rows: Sequence[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows to the longest; padding is its own 'sequence' with labels ignored."""
    width = max(len(row.input_ids) for row in rows)
    batch = {name: torch.full((len(rows), width), fill, dtype=torch.long)
             for name, fill in (("input_ids", pad_id), ("labels", IGNORE_INDEX),
                                ("position_ids", 0))}
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        batch["input_ids"][i, :n] = torch.tensor(row.input_ids)
        batch["labels"][i, :n] = torch.tensor(row.labels)
        batch["position_ids"][i, :n] = torch.tensor(row.position_ids)
        batch["position_ids"][i, n:] = torch.arange(width - n)
    return batch


@dataclass
class StepBatch:
    """What one rank trains on in one optimizer step (Lightning moves its tensors to the device,
    which needs a mutable dataclass)."""

    micro_batches: list[dict[str, torch.Tensor]]
    label_tokens: int  # supervised tokens in the whole global batch (all ranks): the loss divisor
    tokens: int  # non-padding tokens in the whole global batch
    padded_tokens: int  # tokens computed over, padding included, in the whole global batch


def micro_batches(rows: Sequence[Row], micro_batch_tokens: int) -> list[list[Row]]:
    """Consecutive rows (longest first) grouped into micro-batches whose padded size (rows x the
    longest row) stays within ``micro_batch_tokens``; a row longer than the budget goes alone."""
    batches: list[list[Row]] = []
    for row in rows:
        if batches and (len(batches[-1]) + 1) * len(batches[-1][0].input_ids) \
                <= micro_batch_tokens:
            batches[-1].append(row)
        else:
            batches.append([row])
    return batches


def deal(rows: Sequence[Row], world_size: int, micro_batch_tokens: int, empty: Row
         ) -> list[list[list[Row]]]:
    """Rows (longest first) dealt round-robin to ranks, then grouped into micro-batches within
    the token budget.

    Every rank gets the same number of micro-batches, topped up with ``empty`` ones, because
    each forward/backward under FSDP is a collective that all ranks must enter.
    """
    dealt = [micro_batches(rows[rank::world_size], micro_batch_tokens)
             for rank in range(world_size)]
    most = max(len(batches) for batches in dealt)
    return [batches + [[empty]] * (most - len(batches)) for batches in dealt]


def plan_step(examples: Sequence[Example], indices: Sequence[int], *, packing: bool,
              max_seq_len: int, micro_batch_tokens: int, rank: int, world_size: int,
              pad_id: int) -> StepBatch:
    """Turn one step's examples into this rank's micro-batches (pure; every rank agrees)."""
    chosen = [examples[i] for i in indices]
    if packing:
        groups = best_fit_decreasing([len(e) for e in chosen], max_seq_len)
    else:
        groups = [[i] for i in range(len(chosen))]
    rows = sorted((pack_row([chosen[i] for i in g]) for g in groups),
                  key=lambda r: -len(r.input_ids))
    # Two tokens: the shortest row with a prediction in it (an ignored one), so that a rank's
    # filler micro-batch still runs the whole model, as every rank's must.
    empty = Row([pad_id, pad_id], [IGNORE_INDEX, IGNORE_INDEX], [0, 1])
    dealt = deal(rows, world_size, micro_batch_tokens, empty)
    padded = sum(len(chunk) * max(len(row.input_ids) for row in chunk)
                 for rank_chunks in dealt for chunk in rank_chunks)
    return StepBatch(
        micro_batches=[collate(chunk, pad_id) for chunk in dealt[rank]],
        # A sequence's first token is never predicted (nothing precedes it in its sequence).
        label_tokens=sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in chosen),
        tokens=sum(len(e) for e in chosen),
        padded_tokens=padded,
    )
