"""The prepared GPU training check: the project's own training path at 8K, 32K and 64K-token rows.

A model built from a config alone (random weights, nothing downloaded: Qwen3-4B's shape by
default) trains a few steps through what train.py runs on each rank: the Lightning module
(``ssd/training/module.py``: chunked loss head, MLPs in token pieces, activation checkpointing),
the Trainer and strategy of ``ssd/training/worker.py`` and ``strategy.py``, the packed-row
attention of ``attention.py`` and the packed-row batches of ``data.py`` (several sequences per
row, position ids restarting at each). Each mode runs in a fresh process:

* ``fsdp``: FSDP2 (``fully_shard`` on each decoder layer, then the root) with the bf16
  mixed-precision policy, as train.py runs on several processes, here on a one-process mesh;
* ``plain``: the plain module under bf16 autocast, as train.py runs on one process.

Per row length: warm-up steps, then measured steps (synchronised wall time of the whole training
step: forward, backward, clipping, AdamW). After the first length the trainer saves a distributed
(DCP) checkpoint as train.py does (``trainer.save_checkpoint``), every weight and optimizer
tensor is poisoned with NaN, the strategy loads the checkpoint back (as a resume does), and every
tensor is compared bit for bit with a copy taken before the save. One table is printed last and
written as JSON (``--json``); each mode's log lies beside it.

Columns: ``tokens/s`` (row tokens over the median measured step); ``TFLOP/s`` and ``MFU`` (model
FLOPs per step over that time, and over the device's dense bf16 peak: 989.4 TFLOP/s on an H100
or H200 SXM by NVIDIA's datasheet, or ``--peak-tflops``; the bf16 matrix-product rate measured in
the same process is printed beside it); ``peak GiB`` (the allocator's high-water mark during the
measured steps: ``torch.cuda.max_memory_allocated``; on CPU the resident-set peak, reset per step
through ``/proc/self/clear_refs``); ``above fixed`` (the peak less what is held between steps,
weights and AdamW state, and less the gradients: the activations and the loss head's working
set), per token (KiB) and its growth per doubling of the row (1.0: linear in the row, 2.0:
quadratic; below 1 while the loss head's fixed 4,096-token chunk still dominates); the loss of
the first and last step at that length, whether every loss was finite; and the checkpoint round
trip (bitwise exact or not, its size, save and load seconds).

Model FLOPs per step, counted for a packed row of sequences s_1..s_n (T = sum s_i tokens), the
recomputation of activation checkpointing not counted (MFU's convention):

    6 * P * T  +  6 * layers * heads * head_dim * sum(s_i ** 2)

P: the parameters that multiply activations (all of them with tied embeddings, where the
embedding matrix is also the output head); the second term is causal attention (QK^T and PV,
half the square each, forward plus twice that backward) inside each sequence only.

On a lent H200 (one device call; ``omegaconf`` and its parser runtime, which the training
package imports and the device image lacks, travel as their installed folders; prepare them
here once, then call the device tool):

    python bench/gpu_check.py --prepare-carry            # writes .cache/gpu_check_site (ignored)
    device run, carry [".cache/gpu_check_site"], timeout_s 480:
        set -o pipefail; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
        df -h /dev/shm /tmp; PYTHONPATH=.cache/gpu_check_site PYTHONUNBUFFERED=1 python3 \
            bench/gpu_check.py --json $OUT/gpu_check.json 2>&1 | tee $OUT/gpu_check.log

Not yet run on a GPU (no session so far was lent one). Estimated for an H200: the 12 steps of
a mode are ~1.2e16 model FLOPs (1.6e16 with recomputation), ~40 s at 400 TFLOP/s; its round
trip moves 4.0B parameters x 12 bytes (fp32 weights, two AdamW moments) = 45 GiB each way
through /dev/shm; with start-up, about 2 minutes per mode. Each mode is capped at
``--mode-timeout-s`` (220 s) and keeps what it measured before a cap or crash, so the call
prints its table within 8 minutes whatever happens. On CPU (the test suite):

    python bench/gpu_check.py --model tiny --lengths 256,512,1024 --sequence-tokens 96 \
        --steps 3 --lr 3e-3 --json /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen3 shapes (the models' published configs); every one with tied embeddings.
MODEL_SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "vocab_size": 512},
    "0.6b": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
             "vocab_size": 151_936},
    "4b": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
           "vocab_size": 151_936},
}
# Dense bf16 matrix peak by NVIDIA's datasheets, in TFLOP/s, by the name CUDA gives the device
# (the SXM parts; others need --peak-tflops).
DATASHEET_BF16_TFLOPS = {"NVIDIA H200": 989.4, "NVIDIA H100 80GB HBM3": 989.4,
                         "NVIDIA A100-SXM4-80GB": 312.0}
MODES = ("fsdp", "plain")
COLUMNS = ("mode", "row tokens", "seqs/row", "step s", "tokens/s", "TFLOP/s", "MFU",
           "peak GiB", "above fixed GiB", "KiB/token", "growth/doubling", "loss first→last",
           "loss finite", "checkpoint")
# What the training package imports beyond the device image (torch, lightning, transformers):
# pure-Python packages, carried as their installed folders.
CARRIED_PACKAGES = ("omegaconf", "antlr4")
CARRY_DIR = REPO / ".cache" / "gpu_check_site"
GIB = 2**30
FLOPS_FORMULA = ("6 * parameters * row tokens + 6 * layers * heads * head_dim * sum(sequence "
                 "length^2), recomputation not counted")


# ---------------------------------------------------------------------------- data and FLOPs


def sequence_lengths(row_tokens: int, mean: int) -> list[int]:
    """Lengths of the sequences packed into one row of exactly ``row_tokens``: mean, half and
    one and a half times ``mean`` in turn, the last one taking what is left."""
    pattern = (mean, mean // 2, mean + mean // 2)
    lengths: list[int] = []
    for size in itertools.cycle(pattern):
        remaining = row_tokens - sum(lengths)
        if remaining <= size + 1:  # never leave a one-token tail (nothing to predict in it)
            lengths.append(remaining)
            return lengths
        lengths.append(size)
    raise AssertionError("unreachable")


def synthetic_examples(lengths: list[int], alphabet: int, seed: tuple[int, ...]) -> list[Any]:
    """One example per length: counting upwards through an ``alphabet`` of token ids (mod its
    size) from a random start, the first quarter a prompt (no labels). Every token after the
    first follows from the one before it, so a model that learns the rule drives the loss
    towards 0, from ln(vocab) at a small random init through ln(alphabet) once it has only
    learnt which tokens occur."""
    import numpy as np

    from ssd.training.data import IGNORE_INDEX, Example

    starts = np.random.default_rng(list(seed)).integers(0, alphabet, len(lengths))
    examples = []
    for start, length in zip(starts.tolist(), lengths, strict=True):
        ids = [(start + i) % alphabet for i in range(length)]
        prompt = length // 4
        examples.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def model_flops(matmul_params: int, layers: int, heads: int, head_dim: int,
                lengths: list[int]) -> float:
    """Training FLOPs of one packed row (formula in the module docstring)."""
    return 6.0 * matmul_params * sum(lengths) + 6.0 * layers * heads * head_dim * sum(
        s * s for s in lengths)


def growth_per_doubling(shorter: tuple[int, float], longer: tuple[int, float]) -> float:
    """How per-token memory grows per doubling of the row, from (tokens, bytes above the fixed
    part) at two lengths: 1.0 when memory is linear in the row, 2.0 when quadratic."""
    (a, above_a), (b, above_b) = shorter, longer
    return ((above_b / b) / (above_a / a)) ** (1 / math.log2(b / a))


# ---------------------------------------------------------------------------- memory


class DeviceMemory:
    """The CUDA caching allocator's bytes in use and their high-water mark."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda

    def current(self) -> int:
        return self.cuda.memory_allocated()

    def reset_peak(self) -> None:
        self.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        return self.cuda.max_memory_allocated()


class HostMemory:
    """This process's resident set and its high-water mark (Linux: VmRSS, VmHWM; writing 5 to
    /proc/self/clear_refs resets the mark)."""

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field}")

    def current(self) -> int:
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int:
        return self._status("VmHWM")


# ---------------------------------------------------------------------------- one mode


@dataclasses.dataclass(frozen=True)
class Settings:
    """One mode's run, as the parent hands it to the child process."""

    mode: str
    model: str
    lengths: list[int]
    sequence_tokens: int
    warmup: int
    steps: int
    lr: float
    alphabet: int
    attention: str
    checkpoint_dirs: list[str]
    seed: int
    output: str  # the child's JSON, rewritten after every length

    def plan(self) -> list[tuple[int, bool]]:
        """(row tokens, measured) for every optimizer step, lengths in the given order."""
        return [(length, index >= self.warmup) for length in self.lengths
                for index in range(self.warmup + self.steps)]


def measure_matmul_tflops() -> float:
    """bf16 8192^3 matrix products on random data (median of 10 after 3 warm-ups), TFLOP/s."""
    import torch

    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = []
    for index in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if index >= 3:
            times.append(start.elapsed_time(end) / 1000)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 / statistics.median(times) / 1e12


def run_mode(settings: Settings) -> None:
    """Train through the project's path in this process; write what was measured to
    ``settings.output`` after every length (a timeout or crash keeps what came before)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, Dataset
    from transformers import AutoModelForCausalLM, Qwen3Config

    from ssd.training.attention import attention_implementation
    from ssd.training.data import plan_step
    from ssd.training.module import SFTModule
    from ssd.training.worker import lightning_trainer

    gpu = torch.cuda.is_available()
    memory = DeviceMemory() if gpu else HostMemory()
    plan = settings.plan()
    shape = MODEL_SHAPES[settings.model]
    config = Qwen3Config(**shape, tie_word_embeddings=True, rope_theta=1_000_000.0,
                         rms_norm_eps=1e-6, max_position_embeddings=max(settings.lengths),
                         use_cache=False)
    result: dict[str, Any] = {
        "mode": settings.mode, "device": torch.cuda.get_device_name() if gpu else "cpu",
        "torch": torch.__version__, "matmul_tflops": measure_matmul_tflops() if gpu else None,
        "lengths": {}, "losses": [], "checkpoint": None, "out_of_memory_at": None}

    def save() -> None:
        staged = Path(settings.output + ".partial")
        staged.write_text(json.dumps(result, indent=1))
        os.replace(staged, settings.output)

    save()

    class SyntheticSteps(Dataset):
        """Step k: one row of exactly its length, packed by the trainer's own step planner."""

        def __len__(self) -> int:
            return len(plan)

        def __getitem__(self, step: int) -> Any:
            length = plan[step][0]
            examples = synthetic_examples(sequence_lengths(length, settings.sequence_tokens),
                                          settings.alphabet, (settings.seed, step))
            return plan_step(examples, list(range(len(examples))), packing=True,
                             max_seq_len=length, micro_batch_tokens=length, rank=0,
                             world_size=1, pad_id=0)

    class CheckModule(SFTModule):
        """The project's module with its model built from the config, sharded on one process
        in ``fsdp`` mode, and each step timed and its memory read."""

        records: list[dict[str, Any]]

        def load_model(self) -> torch.nn.Module:
            # Initialised where it trains: a 4B model is 16 GB of fp32 weights to draw on the
            # host and copy over otherwise, time the device call is short of.
            torch.manual_seed(settings.seed)
            with torch.device(self.trainer.strategy.root_device):
                return AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                        attn_implementation=self.attention)

        @property
        def sharded(self) -> bool:
            return settings.mode == "fsdp" or super().sharded

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            length, measured = plan[batch_idx]
            if result["out_of_memory_at"] is not None:
                return None  # every later row is at least as long
            if gpu:
                torch.cuda.synchronize()
            held = memory.current()
            memory.reset_peak()
            started = time.perf_counter()
            try:
                loss = super().training_step(batch, batch_idx)
            except torch.cuda.OutOfMemoryError:
                self.optimizers().zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                result["out_of_memory_at"] = length
                save()
                return None
            if gpu:
                torch.cuda.synchronize()
            self.records.append({"length": length, "measured": measured, "loss": float(loss),
                                 "seconds": time.perf_counter() - started, "held": held,
                                 "peak": memory.peak()})
            return loss

    class Recorder(L.Callback):
        """After each length's last step: its summary; after the first length's: the
        checkpoint round trip."""

        def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any,
                               batch: Any, batch_idx: int) -> None:
            if batch_idx + 1 < len(plan) and plan[batch_idx + 1][0] == plan[batch_idx][0]:
                return
            length = plan[batch_idx][0]
            records = [r for r in module.records if r["length"] == length]
            if not any(r["measured"] for r in records):
                return  # out of memory before any measured step
            result["losses"] += [r["loss"] for r in records]
            result["lengths"][str(length)] = summarise(length, records, module)
            save()
            if length == settings.lengths[0]:
                result["checkpoint"] = checkpoint_round_trip(trainer, module, settings)
                save()

    def summarise(length: int, records: list[dict[str, Any]], module: Any) -> dict[str, Any]:
        measured = [r for r in records if r["measured"]]
        lengths = sequence_lengths(length, settings.sequence_tokens)
        seconds = statistics.median(r["seconds"] for r in measured)
        gradients = sum(local(p).numel() * p.element_size()
                        for p in module.model.parameters() if p.requires_grad)
        fixed = min(r["held"] for r in measured) + gradients
        peak = max(r["peak"] for r in measured)
        return {"sequences": len(lengths), "step_seconds": seconds,
                "tokens_per_s": length / seconds,
                "tflops": model_flops(matmul_params, shape["num_hidden_layers"],
                                      shape["num_attention_heads"], shape["head_dim"],
                                      lengths) / seconds / 1e12,
                "peak_bytes": peak, "fixed_bytes": fixed, "above_fixed_bytes": peak - fixed,
                "losses": [r["loss"] for r in records]}

    implementation = attention_implementation(settings.attention, gpu)
    optimizer = {"lr": settings.lr, "min_lr": settings.lr, "warmup_steps": 0,
                 "betas": [0.9, 0.95], "weight_decay": 0.1, "eps": 1e-8}
    module = CheckModule(f"config:{settings.model}", optimizer, len(plan),
                         gradient_clip_val=1.0, activation_checkpointing=True, bf16=True,
                         attention=implementation)
    module.records = []
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    # One epoch: a step skipped after running out of memory takes no optimizer step, and
    # max_steps alone would then start the data over.
    trainer = lightning_trainer(1, 1, len(plan), max_epochs=1, logger=False,
                                callbacks=[Recorder()], enable_progress_bar=False,
                                enable_checkpointing=False, default_root_dir=workdir)
    with torch.device("meta"):
        counted = AutoModelForCausalLM.from_config(config)
    # With tied embeddings the embedding matrix is the output head: every parameter multiplies.
    matmul_params = sum(p.numel() for p in counted.parameters())
    result.update(parameters=matmul_params, attention=implementation)
    save()
    loader = DataLoader(SyntheticSteps(), batch_size=None, collate_fn=lambda batch: batch)
    try:
        trainer.fit(module, train_dataloaders=loader)
    finally:
        result["matmul_dtype"] = module.matmul_dtype
        save()
        shutil.rmtree(workdir, ignore_errors=True)


def checkpoint_round_trip(trainer: Any, module: Any, settings: Settings) -> dict[str, Any]:
    """Save a DCP checkpoint as train.py does, poison every weight and optimizer tensor, load it
    back through the strategy (a resume's path), and compare bit for bit. A failure is
    reported, not raised, and the state put back from a copy, so the longer rows still train."""
    import torch
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    optimizer = trainer.optimizers[0]
    model_state, optimizer_state = (copied(state) for state in training_state(module, optimizer))
    before = flat_tensors(model_state, optimizer_state)
    needed = sum(v.numel() * v.element_size() for v in before.values())
    folder = checkpoint_folder(settings.checkpoint_dirs, needed)
    if folder is None:
        return {"status": f"skipped: {needed / GIB:.1f} GiB needed, no room in "
                          + ", ".join(settings.checkpoint_dirs)}
    path = Path(tempfile.mkdtemp(prefix="gpu_check_", dir=folder)) / "step.ckpt"
    try:
        started = time.perf_counter()
        trainer.save_checkpoint(path)
        saved = time.perf_counter() - started
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        live = [*module.model.parameters(), *(value for state in optimizer.state.values()
                                              for value in state.values())]
        with torch.no_grad():
            for tensor in (local(t) for t in live if isinstance(t, torch.Tensor)):
                tensor.fill_(float("nan") if tensor.is_floating_point() else -1)
        started = time.perf_counter()
        meta = trainer.strategy.load_checkpoint(path)
        loaded = time.perf_counter() - started
        after = flat_tensors(*training_state(module, optimizer))
        differing = [k for k in before if k not in after or not bitwise_equal(before[k],
                                                                               after[k])]
        return {"status": "exact" if not differing and len(after) == len(before) else "differs",
                "tensors": len(before), "weights": sum(k.startswith("model/") for k in before),
                "differing": differing[:10], "bytes": size,
                "save_seconds": saved, "load_seconds": loaded, "folder": str(folder),
                "global_step": meta.get("global_step") == trainer.global_step}
    except Exception as error:  # what broke is the finding; the longer rows still run
        set_model_state_dict(module.model, model_state)
        set_optimizer_state_dict(module.model, optimizer, optimizer_state)
        return {"status": f"failed: {type(error).__name__}: {error}"[:300]}
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def training_state(module: Any, optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a checkpoint must restore: the model's and the optimizer's state dicts, as DCP
    sees them (views of the live tensors, sharded ones as DTensors)."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    return (get_model_state_dict(module.model),
            get_optimizer_state_dict(module.model, optimizer))


def copied(value: Any) -> Any:
    """A state dict with every tensor cloned (on its device)."""
    if isinstance(value, dict):
        return {key: copied(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [copied(inner) for inner in value]
    return value.clone() if hasattr(value, "clone") else value


def flat_tensors(model_state: dict[str, Any], optimizer_state: dict[str, Any]
                 ) -> dict[str, Any]:
    """Every tensor of the two state dicts by its path (this process's part of a DTensor)."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}/{key}", inner)
        elif hasattr(value, "dtype"):
            flat[prefix] = local(value)

    visit("model", model_state)
    visit("optimizer", optimizer_state["state"])
    return flat


def local(tensor: Any) -> Any:
    """This process's part of a sharded (DTensor) tensor, sharing its storage; else itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def bitwise_equal(a: Any, b: Any) -> bool:
    """Same dtype, shape and bit pattern (NaN equals NaN, -0.0 does not equal 0.0)."""
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    as_bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.reshape(-1).contiguous().view(as_bits),
                       b.reshape(-1).contiguous().view(as_bits))


def checkpoint_folder(candidates: list[str], needed: int) -> Path | None:
    """The first candidate folder with room for ``needed`` bytes and a tenth more."""
    for candidate in candidates:
        folder = Path(candidate)
        if folder.is_dir() and shutil.disk_usage(folder).free > needed * 1.1:
            return folder
    return None


# ---------------------------------------------------------------------------- the parent


def run_child(settings: Settings, log: Path, timeout: float) -> dict[str, Any]:
    """One mode in a fresh process (its own memory high-water mark and CUDA context); what it
    wrote before a crash or timeout is kept, with the reason."""
    command = [sys.executable, __file__, "--child", json.dumps(dataclasses.asdict(settings))]
    with open(log, "w") as handle:
        try:
            returncode = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                                        timeout=timeout, env=os.environ).returncode
            failure = None if returncode == 0 else f"exit status {returncode}"
        except subprocess.TimeoutExpired:
            failure = f"over {timeout:.0f} s"
    found: dict[str, Any] = {"mode": settings.mode, "lengths": {}}
    if Path(settings.output).is_file():
        found = json.loads(Path(settings.output).read_text())
    if failure:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:] or ["(no output)"]
        print(f"gpu_check: mode {settings.mode} failed ({failure}); the end of {log}:",
              *tail, sep="\n    ", flush=True)
        found["failure"] = f"{failure}: {tail[-1][:200]}"
    return found


def cell(value: float | None, pattern: str) -> str:
    return "–" if value is None else format(value, pattern)


def table(report: dict[str, Any]) -> list[str]:
    """The printed table: one line per mode and row length."""
    lines = [" | ".join(COLUMNS), " | ".join("---" for _ in COLUMNS)]
    peak = report["peak_tflops"]
    for mode in report["modes"]:
        found = report["modes"][mode]
        previous: tuple[int, float] | None = None
        for length in report["lengths"]:
            row = found["lengths"].get(str(length))
            if row is None:
                why = ("out of memory" if found.get("out_of_memory_at") is not None
                       and length >= found["out_of_memory_at"]
                       else found.get("failure", "not run")[:60])
                lines.append(" | ".join([mode, str(length), why]
                                        + ["–"] * (len(COLUMNS) - 3)))
                continue
            above = row["above_fixed_bytes"]
            growth = (growth_per_doubling(previous, (length, above))
                      if previous and previous[1] > 0 and above > 0 else None)
            previous = (length, above)
            losses = row["losses"]
            checkpoint = found.get("checkpoint") if length == report["lengths"][0] else None
            lines.append(" | ".join([
                mode, str(length), str(row["sequences"]), f"{row['step_seconds']:.3g}",
                f"{row['tokens_per_s']:,.0f}", f"{row['tflops']:.3g}",
                cell(row["tflops"] / peak if peak else None, ".1%"),
                f"{row['peak_bytes'] / GIB:.3g}", f"{above / GIB:.3g}",
                f"{above / length / 1024:.1f}", cell(growth, ".2f"),
                f"{losses[0]:.3f}→{losses[-1]:.3f}",
                "yes" if all(math.isfinite(v) for v in losses) else "NO",
                describe_checkpoint(checkpoint) if checkpoint else "–"]))
    return lines


def describe_checkpoint(checkpoint: dict[str, Any]) -> str:
    if checkpoint["status"] not in ("exact", "differs"):
        return checkpoint["status"]
    what = "bitwise exact" if checkpoint["status"] == "exact" else (
        f"DIFFERS in {len(checkpoint['differing'])}+ of {checkpoint['tensors']} tensors")
    return (f"{what}, {checkpoint['bytes'] / GIB:.3g} GiB, save "
            f"{checkpoint['save_seconds']:.3g} s, load {checkpoint['load_seconds']:.3g} s")


def prepare_carry(folder: Path) -> None:
    """Copy the pure-Python packages the device image lacks into ``folder`` (by default
    .cache/gpu_check_site, which git ignores), for the device call's ``carry``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in CARRIED_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"gpu_check: package {name} is not installed here")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"gpu_check: {', '.join(CARRIED_PACKAGES)} copied to {folder} "
          f"({size / 2**20:.1f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_SHAPES), default="4b")
    parser.add_argument("--lengths", default="8192,32768,65536", help="row lengths, ascending")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--sequence-tokens", type=int, default=4096,
                        help="mean length of the sequences packed into a row")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps per length")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per length")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--alphabet", type=int, default=64, help="token ids the data uses")
    parser.add_argument("--attention", default="auto", help="trainer.attention")
    parser.add_argument("--checkpoint-dir", action="append",
                        help="where the round trip's checkpoint may go, first with room wins "
                             "(default: /dev/shm, then the temporary folder)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    parser.add_argument("--mode-timeout-s", type=float, default=220)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the report here (logs beside it)")
    parser.add_argument("--prepare-carry", type=Path, nargs="?", const=CARRY_DIR,
                        metavar="FOLDER", help=prepare_carry.__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_mode(Settings(**json.loads(args.child)))
        return
    if args.prepare_carry:
        prepare_carry(args.prepare_carry)
        return

    lengths = [int(v) for v in args.lengths.split(",")]
    if lengths != sorted(lengths):
        parser.error("--lengths: ascending, please (memory is compared from short to long)")
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: from {', '.join(MODES)}")
    out = args.json or Path(tempfile.mkdtemp(prefix="gpu_check_")) / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_dirs = args.checkpoint_dir or ["/dev/shm", tempfile.gettempdir()]
    report: dict[str, Any] = {"model": args.model, "shape": MODEL_SHAPES[args.model],
                              "lengths": lengths, "sequence_tokens": args.sequence_tokens,
                              "warmup": args.warmup, "steps": args.steps, "modes": {}}
    for mode in modes:
        settings = Settings(mode, args.model, lengths, args.sequence_tokens, args.warmup,
                            args.steps, args.lr, args.alphabet, args.attention, checkpoint_dirs,
                            args.seed, str(out.with_suffix(f".{mode}.json")))
        log = out.with_suffix(f".{mode}.log")
        print(f"gpu_check: mode {mode} ({args.model}, rows {args.lengths}) -> {log}", flush=True)
        report["modes"][mode] = run_child(settings, log, args.mode_timeout_s)
        Path(settings.output).unlink(missing_ok=True)
    first = next(iter(report["modes"].values()))
    device = first.get("device", "?")
    peak = args.peak_tflops or DATASHEET_BF16_TFLOPS.get(device)
    report.update(device=device, peak_tflops=peak, flops_per_step=FLOPS_FORMULA)
    out.write_text(json.dumps(report, indent=1))

    print(f"\ngpu_check: {args.model} ({first.get('parameters', 0):,} parameters), "
          f"device {device}, torch {first.get('torch', '?')}; MFU against "
          + (f"{peak} TFLOP/s dense bf16" if peak else "no known peak (give --peak-tflops)")
          + (f"; bf16 8192^3 matmul measured {first['matmul_tflops']:.0f} TFLOP/s"
             if first.get("matmul_tflops") else "")
          + f"\n  model FLOPs per step: {FLOPS_FORMULA}")
    for mode, found in report["modes"].items():
        print(f"  {mode}: attention {found.get('attention', '?')}, matmuls in "
              f"{found.get('matmul_dtype', '?')}"
              + (f"; FAILED ({found['failure']})" if "failure" in found else ""))
    print("\n".join(["", *table(report), "", f"report: {out}"]))


if __name__ == "__main__":
    main()
