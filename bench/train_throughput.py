"""train.py's trained-token throughput against a bare PyTorch loop, and packing's useful tokens.

1. Throughput. The same model, optimizer (AdamW), data and global batch, on one process:
   - train.py (Lightning under torchrun, as users run it), each step's wall time from the
     previous step's end (its logged ``train/tokens_per_s`` is the step's tokens over that time);
   - a bare loop: the same packed micro-batches through the same loss, ``backward``,
     ``clip_grad_norm_``, ``AdamW.step`` — no Lightning, no logging.
   Step k trains the same sequences in both (steps are pure functions of k), so a round's
   throughput is the trained tokens of steps ``--warmup``.. over their summed wall time. Each
   runs in a fresh process (with the bare loop kept warm in the bench's own process, train.py's
   fresh process measured ~8 % slower than alone, the bare loop ~3 % faster than fresh),
   and the two alternate over ``--rounds`` rounds, so both see the same machine. Other load
   on the machine only ever slows a round down, so the ratio of the best rounds is printed, and
   the ratio of the medians over all rounds beside it.
2. Packing. On length-skewed data (log-normal lengths), the fraction of computed tokens that are
   real (not padding) for one step, with packing and without it (micro-batches padded to their
   longest row).

    python bench/train_throughput.py                      # SmolLM2-135M
    python bench/train_throughput.py --model tiny --steps 12 --rounds 5
Targets (issue): throughput ratio >= 0.95; packing >= 0.95 useful tokens.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from ssd.training.data import StepBatch


def sampled_ids_samples(path: Path, count: int, model: str) -> None:
    """Real code as SFT data, in generate.py's training-set format (token ids, as train.py reads
    them): LeetCode statements as chat prompts, their reference solutions as the completions,
    ended by the model's end-of-turn token."""
    from transformers import AutoTokenizer

    from ssd.models import resolve_model_path
    from ssd.sampling import chat_prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(f"builtin:{model}"))
    problems = json.loads((REPO / "data/prompts/leetcode_sample.json").read_text())[:count]
    with open(path, "w") as handle:
        for p in problems:
            answer = f"```python\n{p['solutions']}```"
            completion = tokenizer(answer, add_special_tokens=False)["input_ids"]
            handle.write(json.dumps({
                "prompt_token_ids": chat_prompt_ids(tokenizer, [{"role": "user",
                                                                 "content": p["problem"]}]),
                "completion_token_ids": [*completion, tokenizer.eos_token_id],
                "finish_reason": "stop"}) + "\n")


def train_py_seconds(samples: Path, out: Path, args: argparse.Namespace,
                     tokens: list[int]) -> list[float]:
    """Each step's wall time in train.py (``tokens``: each step's trained tokens)."""
    command = [sys.executable, str(REPO / "train.py"), f"model={args.model}",
               f"data.samples={samples}", f"output_dir={out}", f"trainer.max_steps={args.steps}",
               f"trainer.global_batch_size={args.global_batch}",
               f"trainer.max_seq_len={args.max_seq_len}", f"trainer.save_every_n_steps={10**6}",
               "trainer.activation_checkpointing=false", "trainer.precision=fp32",
               "logger=none", "progress=false"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with open(out / "csv" / "metrics.csv") as handle:
        rates = [float(row["train/tokens_per_s"]) for row in csv.DictReader(handle)]
    return [n / rate for n, rate in zip(tokens, rates, strict=True)]


class BareLoop:
    """The baseline: the same packed micro-batches, loss, clipping and AdamW, nothing else."""

    def __init__(self, samples: Path, args: argparse.Namespace) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ssd.models import resolve_model_path
        from ssd.training import attention
        from ssd.training.data import read_training_set, training_examples
        from ssd.training.module import ResponseLoss

        path = resolve_model_path(f"builtin:{args.model}")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.examples, _ = training_examples(read_training_set(samples), self.tokenizer)
        # The attention train.py runs (trainer.attention=auto on this machine).
        attention.register()
        implementation = attention.attention_implementation("auto", torch.cuda.is_available())
        self.model = ResponseLoss(AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation=implementation))
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-6, betas=(0.9, 0.95),
                                           weight_decay=0.1)
        self.args = args

    def batch(self, step: int) -> StepBatch:
        from ssd.training.data import plan_step, step_indices

        indices = step_indices(len(self.examples), self.args.global_batch, step, 0)
        return plan_step(self.examples, indices, packing=True, max_seq_len=self.args.max_seq_len,
                         micro_batch_tokens=self.args.max_seq_len, rank=0, world_size=1,
                         pad_id=self.tokenizer.pad_token_id or 0)

    def seconds(self, steps: range) -> list[float]:
        """Each step's wall time, planning its batch included (as train.py's data loading)."""
        import torch

        seconds = []
        for step in steps:
            start = time.perf_counter()
            batch = self.batch(step)
            for micro in batch.micro_batches:
                (self.model(**micro) / batch.label_tokens).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - start)
        return seconds


def useful_fractions(seed: int = 0) -> tuple[float, float]:
    import numpy as np

    from ssd.training.data import Example, plan_step

    lengths = np.random.default_rng(seed).lognormal(mean=6.0, sigma=0.9, size=256)
    lengths = np.clip(lengths.astype(int), 16, 4096)
    examples = [Example([1] * int(n), [1] * int(n)) for n in lengths]
    common = dict(max_seq_len=4096, rank=0, world_size=1, pad_id=0)
    indices = list(range(len(examples)))
    packed = plan_step(examples, indices, packing=True, micro_batch_tokens=4096, **common)
    # Unpacked: one sequence per row, micro-batches of up to 8 rows' worth of the longest.
    padded = plan_step(examples, indices, packing=False, micro_batch_tokens=8 * 4096, **common)
    return packed.tokens / packed.padded_tokens, padded.tokens / padded.padded_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--bare-loop", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare_loop:  # one bare round, in this fresh process
        bare_loop = BareLoop(args.bare_loop, args)
        print(json.dumps({"tokens": [bare_loop.batch(step).tokens for step in range(args.steps)],
                          "seconds": bare_loop.seconds(range(args.steps))}))
        return

    ours: list[float] = []  # each round's tokens/s over the measured steps
    bare: list[float] = []
    measured = slice(args.warmup, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "train.jsonl"
        sampled_ids_samples(samples, args.samples, args.model)
        for round_ in range(args.rounds):
            bare_round = json.loads(subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--bare-loop", str(samples)],
                check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            tokens = bare_round["tokens"]
            trained = sum(tokens[measured])
            bare.append(trained / sum(bare_round["seconds"][measured]))
            run = Path(tmp) / f"run-{round_}"
            ours.append(trained / sum(train_py_seconds(samples, run, args, tokens)[measured]))
            print(f"round {round_}: train.py {ours[-1]:.1f}  bare {bare[-1]:.1f} tokens/s "
                  f"({ours[-1] / bare[-1]:.3f})", flush=True)
    packed, padded = useful_fractions()
    print(f"model={args.model} rounds={args.rounds} x {args.steps} steps (first {args.warmup} "
          f"excluded: {trained} trained tokens) global_batch={args.global_batch} "
          f"max_seq_len={args.max_seq_len}")
    print(f"train.py  : {max(ours):9.1f} trained tokens/s (best round)  "
          f"{statistics.median(ours):9.1f} (median round)")
    print(f"bare loop : {max(bare):9.1f} trained tokens/s (best round)  "
          f"{statistics.median(bare):9.1f} (median round)")
    print(f"throughput ratio: {max(ours) / max(bare):.3f} best rounds, "
          f"{statistics.median(ours) / statistics.median(bare):.3f} median rounds  "
          f"(target >= 0.95)")
    print(f"useful-token fraction on length-skewed data: packed {packed:.3f}  "
          f"unpacked (micro-batches of up to 8 x 4096 tokens) {padded:.3f}  "
          f"(target >= 0.95 packed)")


if __name__ == "__main__":
    main()
