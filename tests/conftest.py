"""Shared fixtures: the tiny model (built once, cached) and Hydra composition for in-process
runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Small KV cache and in-process engine core for every vLLM engine the tests start.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("WANDB_MODE", "offline")
# Test processes running side by side (`make test`: pytest-xdist) give each process, and every
# stage it starts, one thread: two processes' OpenMP pools on the same cores spin against each
# other (measured: the lab's training 9x slower than alone), one thread each keeps both busy.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from ssd.models import resolve_model_path

    return resolve_model_path("builtin:tiny")


def compose(config_name: str, overrides: list[str]):
    """The config an entry script would see for ``overrides`` (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import ssd.config  # noqa: F401  (registers the ${ssd.root:} resolver)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def cli_error(script: str, args: list[str], cwd: Path) -> list[str]:
    """Run ``<script>.py args`` expecting bad input: exit status 2; returns its stderr lines."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / f"{script}.py"), *args], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stderr.strip().splitlines()


# Fixed inputs for the stages a declared study feeds (a training set, a checkpoint export).
FED = {"train": ["data.samples=runs/x/train.jsonl"], "ssd": ["model.path=runs/t/hf/final"]}


def composed_stages(runner) -> dict[str, dict]:
    """Every declared stage of a study runner composed as its script would see it, fed ``FED``,
    resolved, with REPO written ``<repo>`` (so configs recorded on one machine compare on
    another). Recorded fixtures of this form pin a driver's stages to what they were."""
    import json

    from omegaconf import OmegaConf

    found = {}
    for spec in runner.specs:
        fed = FED["train"] if spec.script == "train" else FED["ssd"] if spec.model else []
        composed = compose(spec.script, runner.overrides(spec, fed))
        found[spec.name] = json.loads(json.dumps(OmegaConf.to_container(
            composed, resolve=True)).replace(str(REPO), "<repo>"))
    return found


# The longest files first: `make test` runs whole files in two processes (pytest-xdist, in this
# order), and the two finish together only when the long ones do not start last.
LONGEST_FIRST = ("test_grid.py", "test_studies.py", "test_lab.py", "test_demo.py", "test_train.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
