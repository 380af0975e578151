"""train.py's trained-token throughput against a bare PyTorch loop, and packing's useful tokens.

1. Throughput. The same model, optimizer (AdamW), data and global batch, on one process:
   - train.py (Lightning + FSDP2 under torchrun, as users run it), its per-step
     ``train/tokens_per_s`` (non-padding tokens over wall time between step ends) from its CSV log;
   - a bare loop: the same packed micro-batches through the same loss, ``backward``,
     ``clip_grad_norm_``, ``AdamW.step`` — no Lightning, no FSDP, no logging.
   The two alternate over ``--rounds`` rounds of ``--steps`` steps each, so both see the same
   machine; a round's rate is the median over its steps after the first ``--warmup``. Other
   load on the machine only ever slows a round down, so the ratio of the best rounds is printed,
   and the ratio of the medians over all rounds beside it.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def chat_samples(path: Path, count: int) -> None:
    """Real code as SFT data: LeetCode statements and their reference solutions."""
    problems = json.loads((REPO / "data/prompts/leetcode_sample.json").read_text())[:count]
    with open(path, "w") as handle:
        for p in problems:
            messages = [{"role": "user", "content": p["problem"]},
                        {"role": "assistant", "content": f"```python\n{p['solutions']}```"}]
            handle.write(json.dumps({"messages": messages}) + "\n")


def train_py_rate(samples: Path, out: Path, args: argparse.Namespace) -> list[float]:
    command = [sys.executable, str(REPO / "train.py"), f"model={args.model}",
               f"data.samples={samples}", f"output_dir={out}", f"trainer.max_steps={args.steps}",
               f"trainer.global_batch_size={args.global_batch}",
               f"trainer.max_seq_len={args.max_seq_len}", f"trainer.save_every_n_steps={10**6}",
               "trainer.activation_checkpointing=false", "trainer.precision=fp32",
               "logger=none", "progress=false"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with open(out / "csv" / "metrics.csv") as handle:
        return [float(row["train/tokens_per_s"]) for row in csv.DictReader(handle)]


class BareLoop:
    """The baseline: the same packed micro-batches, loss, clipping and AdamW, nothing else."""

    def __init__(self, samples: Path, args: argparse.Namespace) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ssd.models import resolve_model_path
        from ssd.training.data import read_training_set, render
        from ssd.training.module import ResponseLoss

        path = resolve_model_path(f"builtin:{args.model}")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.examples = [render(self.tokenizer, m, self.tokenizer.eos_token_id)
                         for m in read_training_set(samples)]
        self.model = ResponseLoss(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-6, betas=(0.9, 0.95),
                                           weight_decay=0.1)
        self.args = args

    def rates(self, steps: range) -> list[float]:
        import torch

        from ssd.training.data import plan_step, step_indices

        rates = []
        for step in steps:
            indices = step_indices(len(self.examples), self.args.global_batch, step, 0)
            start = time.perf_counter()
            batch = plan_step(self.examples, indices, packing=True,
                              max_seq_len=self.args.max_seq_len, micro_batch_size=1, rank=0,
                              world_size=1, pad_id=self.tokenizer.pad_token_id or 0)
            for micro in batch.micro_batches:
                (self.model(**micro) / batch.label_tokens).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            rates.append(batch.tokens / (time.perf_counter() - start))
        return rates


def useful_fractions(seed: int = 0) -> tuple[float, float]:
    import numpy as np

    from ssd.training.data import Example, plan_step

    lengths = np.random.default_rng(seed).lognormal(mean=6.0, sigma=0.9, size=256)
    lengths = np.clip(lengths.astype(int), 16, 4096)
    examples = [Example([1] * int(n), [1] * int(n)) for n in lengths]
    common = dict(max_seq_len=4096, rank=0, world_size=1, pad_id=0)
    indices = list(range(len(examples)))
    packed = plan_step(examples, indices, packing=True, micro_batch_size=1, **common)
    padded = plan_step(examples, indices, packing=False, micro_batch_size=8, **common)
    return packed.tokens / packed.padded_tokens, padded.tokens / padded.padded_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()

    ours: list[float] = []  # each round's median step rate
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "train.jsonl"
        chat_samples(samples, args.samples)
        bare_loop = BareLoop(samples, args)
        for round_ in range(args.rounds):
            bare.append(statistics.median(bare_loop.rates(range(args.steps))[args.warmup:]))
            run = Path(tmp) / f"run-{round_}"
            ours.append(statistics.median(train_py_rate(samples, run, args)[args.warmup:]))
            print(f"round {round_}: train.py {ours[-1]:.1f}  bare {bare[-1]:.1f} tokens/s",
                  flush=True)
    packed, padded = useful_fractions()
    print(f"model={args.model} rounds={args.rounds} x {args.steps} steps (first {args.warmup} "
          f"excluded) global_batch={args.global_batch} max_seq_len={args.max_seq_len}")
    print(f"train.py  : {max(ours):9.1f} trained tokens/s (best round)  "
          f"{statistics.median(ours):9.1f} (median round)")
    print(f"bare loop : {max(bare):9.1f} trained tokens/s (best round)  "
          f"{statistics.median(bare):9.1f} (median round)")
    print(f"throughput ratio: {max(ours) / max(bare):.3f} best rounds, "
          f"{statistics.median(ours) / statistics.median(bare):.3f} median rounds  "
          f"(target >= 0.95)")
    print(f"useful-token fraction on length-skewed data: packed {packed:.3f}  "
          f"unpacked (micro-batches of 8) {padded:.3f}  (target >= 0.95 packed)")


if __name__ == "__main__":
    main()
