"""Every experiment preset resolves in every main (`python <main>.py experiment=E --cfg job
--resolve`) to the paper's values for that stage: Table 3 (generation at T_train, SSD-model
evaluation at T_eval), Table 4 (base-model evaluation) and Section C.1 (training).

Each main runs once as a real process that executes its ``__main__`` block with the command line
of each case in turn (Hydra parses the arguments, composes, resolves and prints the job config
exactly as from a shell), so the whole matrix costs three interpreter starts instead of twenty.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))

# (T, top-k, top-p) per model, read from the paper. Table 3: generation (T_train) and evaluation
# (T_eval) of SSD models; Table 4: the base models' recommended decoding ("none" top-k is 0, our
# "disabled"). The OCR prints Llama's Table 4 top-p as "038": read as 0.8, as in the preset.
TABLE_3_GENERATION = {
    "llama3.1-8b-instruct": (0.8, 20, 0.8),
    "qwen3-4b-instruct-2507": (1.6, 20, 0.8),
    "qwen3-4b-thinking-2507": (1.1, 20, 0.95),
    "qwen3-30b-a3b-instruct-2507": (1.6, 20, 0.8),
    "qwen3-30b-a3b-thinking-2507": (1.2, 20, 0.95),
}
TABLE_3_EVALUATION = {
    "llama3.1-8b-instruct": (0.7, 20, 0.8),
    "qwen3-4b-instruct-2507": (1.1, 20, 0.8),
    "qwen3-4b-thinking-2507": (0.7, 20, 0.95),
    "qwen3-30b-a3b-instruct-2507": (0.9, 20, 0.8),
    "qwen3-30b-a3b-thinking-2507": (0.7, 20, 0.9),
}
TABLE_4_BASELINE = {
    "llama3.1-8b-instruct": (0.9, 0, 0.8),
    "qwen3-4b-instruct-2507": (0.7, 20, 0.8),
    "qwen3-4b-thinking-2507": (0.6, 20, 0.95),
    "qwen3-30b-a3b-instruct-2507": (0.7, 20, 0.8),
    "qwen3-30b-a3b-thinking-2507": (0.6, 20, 0.95),
}
# Section C.1: 2,500 iterations for instruct models, 300 for thinking models, checkpoints every
# 250 and 50; the warm-up (not given in the paper) is the presets' tenth of the run.
SCHEDULE = {"instruct": (2500, 250, 250), "thinking": (300, 50, 50)}  # steps, warm-up, save every

BASELINE = ["decoding=baseline", "truncation=baseline"]

# Runs a main's __main__ block once per case, as `python <main> <args> --cfg job --resolve`
# would, and prints [{args, code, yaml}] as JSON.
DRIVER = r"""
import contextlib, io, json, os, runpy, sys

main, cases = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, os.path.dirname(main))  # what `python main.py` puts first on the path
results = []
for args in cases:
    sys.argv = [main, *args, "--cfg", "job", "--resolve"]
    printed, code = io.StringIO(), 0
    with contextlib.redirect_stdout(printed):
        try:
            runpy.run_path(main, run_name="__main__")
        except SystemExit as stop:
            code = stop.code
    results.append({"args": args, "code": code, "yaml": printed.getvalue()})
print(json.dumps(results))
"""


def cases(main: str) -> list[list[str]]:
    per_experiment = {
        "generate": [[]],
        "train": [["data.samples=x"]],  # mandatory; --cfg job does not read it
        "evaluate": [[], BASELINE],
        "pipeline": [[]],
    }[main]
    return [[f"experiment={name}", *extra] for name in EXPERIMENTS for extra in per_experiment]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[tuple[str, ...], Any]:
    """(main, *args) -> the job config that main resolved, the mains run side by side."""
    cwd = tmp_path_factory.mktemp("presets")
    mains = ("generate", "train", "evaluate", "pipeline")
    processes = {
        main: subprocess.Popen([sys.executable, "-c", DRIVER, str(REPO / f"{main}.py"),
                                json.dumps(cases(main))], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for main in mains}
    configs = {}
    for main, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
        for case in json.loads(stdout):
            assert case["code"] in (0, None), f"{main}.py {' '.join(case['args'])}: {stderr}"
            configs[(main, *case["args"])] = OmegaConf.create(case["yaml"])
    return configs


def decoding_of(cfg: Any) -> tuple[float, int, float]:
    return cfg.decoding.T, cfg.truncation.top_k, cfg.truncation.top_p


def test_every_experiment_preset_is_a_paper_model():
    assert set(EXPERIMENTS) == set(TABLE_3_GENERATION) == set(TABLE_4_BASELINE)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_generate_samples_at_t_train(resolved, name):
    cfg = resolved[("generate", f"experiment={name}")]
    assert cfg.model.name == name and cfg.model.thinking == ("thinking" in name)
    assert decoding_of(cfg) == TABLE_3_GENERATION[name]
    assert cfg.decoding.n == 1  # N = 1 sample per prompt
    assert cfg.engine.max_model_len == 131072  # "128K maximum sequence length"
    assert cfg.filter.drop_empty and cfg.filter.drop_single_line  # the degeneracy filter


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_evaluate_ssd_model_at_t_eval(resolved, name):
    cfg = resolved[("evaluate", f"experiment={name}")]
    assert cfg.model.name == name
    assert decoding_of(cfg) == TABLE_3_EVALUATION[name]
    assert cfg.decoding.n == cfg.eval.n == 10  # 10 samples per problem
    assert list(cfg.eval.ks) == [1, 5]
    assert cfg.engine.max_model_len == 131072


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_evaluate_base_model_at_table_4(resolved, name):
    cfg = resolved[("evaluate", f"experiment={name}", *BASELINE)]
    assert decoding_of(cfg) == TABLE_4_BASELINE[name]
    assert cfg.decoding.n == 10


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_train_follows_section_c1(resolved, name):
    cfg = resolved[("train", f"experiment={name}", "data.samples=x")]
    assert cfg.model.name == name
    o, t = cfg.optimizer, cfg.trainer
    assert (o.lr, o.min_lr) == (5e-6, 1e-6)  # cosine decay 5e-6 -> 1e-6
    assert list(o.betas) == [0.9, 0.95] and o.weight_decay == 0.1
    assert t.global_batch_size == 32 and t.max_seq_len == 65536
    steps, warmup, every = SCHEDULE["thinking" if "thinking" in name else "instruct"]
    assert (t.max_steps, o.warmup_steps, t.save_every_n_steps) == (steps, warmup, every)
    assert cfg.data.samples == "x"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_grid_defaults_to_the_papers_t_train_and_t_eval(resolved, name):
    cfg = resolved[("pipeline", f"experiment={name}")]
    generate = resolved[("generate", f"experiment={name}")]
    ssd = resolved[("evaluate", f"experiment={name}")]
    assert (cfg.gen.T, cfg.eval.T) == (generate.decoding.T, ssd.decoding.T)
    assert cfg.model.path == generate.model.path
