"""Config tree: presets resolve, values are validated at start-up with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.generation.run import filter_plan, sampling_plan, validate
from tests.conftest import REPO, compose

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
# Table 3 (generation, evaluation) and Table 4 (baseline): (T, top_k, top_p).
PAPER = {
    "llama3.1-8b-instruct": ((0.8, 20, 0.8), (0.7, 20, 0.8), (0.9, 0, 0.8)),
    "qwen3-4b-instruct-2507": ((1.6, 20, 0.8), (1.1, 20, 0.8), (0.7, 20, 0.8)),
    "qwen3-4b-thinking-2507": ((1.1, 20, 0.95), (0.7, 20, 0.95), (0.6, 20, 0.95)),
    "qwen3-30b-a3b-instruct-2507": ((1.6, 20, 0.8), (0.9, 20, 0.8), (0.7, 20, 0.8)),
    "qwen3-30b-a3b-thinking-2507": ((1.2, 20, 0.95), (0.7, 20, 0.9), (0.6, 20, 0.95)),
}


def test_every_paper_model_has_a_preset():
    assert set(EXPERIMENTS) == set(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_experiment_presets_carry_tables_3_and_4(name):
    cfg = compose("generate", [f"experiment={name}"])
    generation, evaluation, baseline = PAPER[name]
    assert (cfg.decoding.T, cfg.truncation.top_k, cfg.truncation.top_p) == generation
    assert cfg.decoding.n == 1
    recipe = cfg.recipe
    assert (recipe.evaluation.T, recipe.evaluation.top_k, recipe.evaluation.top_p) == evaluation
    assert (recipe.baseline.T, recipe.baseline.top_k, recipe.baseline.top_p) == baseline
    assert "/" in cfg.model.path  # a hub id
    assert cfg.model.thinking == ("thinking" in name)
    assert cfg.engine.max_model_len == 131072
    expected_steps = 300 if "thinking" in name else 2500
    assert cfg.recipe.training.max_steps == expected_steps
    validate(cfg)


def test_decoding_presets_follow_the_recipe_and_overrides_win():
    cfg = compose("generate", ["decoding=baseline", "truncation=baseline"])
    assert cfg.decoding.T == cfg.recipe.baseline.T
    cfg = compose("generate", ["decoding.T=1.6", "truncation.top_k=20", "truncation.top_p=0.8"])
    assert (cfg.decoding.T, cfg.truncation.top_k, cfg.truncation.top_p) == (1.6, 20, 0.8)
    none = compose("generate", ["truncation=none"])
    assert (none.truncation.top_k, none.truncation.top_p) == (0, 1.0)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("decoding.T=0", "decoding.T"),
        ("decoding.T=-1", "decoding.T"),
        ("truncation.top_p=1.5", "truncation.top_p"),
        ("truncation.top_p=0", "truncation.top_p"),
        ("truncation.top_k=-3", "truncation.top_k"),
        ("truncation.min_p=1", "truncation.min_p"),
        ("decoding.n=0", "decoding.n"),
        ("decoding.max_tokens=0", "decoding.max_tokens"),
        ("data.path=/no/such/pool.json", "data.path"),
        ("data.limit=0", "data.limit"),
        ("engine.gpu_memory_utilization=1.5", "engine.gpu_memory_utilization"),
        ("shard.index=2", "shard.index"),
        ("filter.drop_shortest_fraction=1", "filter.drop_shortest_fraction"),
        ("filter.cut_samples=close", "filter.cut_samples"),
        ("model.dtype=int3", "model.dtype"),
    ],
)
def test_validation_names_the_key(override, key):
    cfg = compose("generate", [override])
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}="):
        validate(cfg)


@pytest.mark.parametrize("override", ["decoding.T=0", "truncation.top_p=1.5"])
def test_cli_fails_fast_with_one_line(override, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "generate.py"), override],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {override.split('=')[0]}=")
    assert "must be" in lines[0]


def test_cli_missing_model_folder_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "generate.py"), f"model.path={tmp_path}/nothing-here",
         f"output_dir={tmp_path}/out"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: model.path={tmp_path}/nothing-here: no such folder, and not a hub id of the "
        "form org/name"]


def test_cfg_job_resolves_for_every_experiment(tmp_path):
    for name in EXPERIMENTS:
        result = subprocess.run([sys.executable, str(REPO / "generate.py"),
                                 f"experiment={name}", "--cfg", "job", "--resolve"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert OmegaConf.create(result.stdout).model.name == name


def test_output_dir_is_named_by_the_sampling_identity_and_the_filter_has_its_own():
    configs = [compose("generate", ["decoding.T=1.6"]),
               compose("generate", ["decoding.T=1.6", "filter.drop_shortest_fraction=0.1"]),
               compose("generate", ["decoding.T=1.2"])]
    a, b, c = (sampling_plan(cfg).run_dir for cfg in configs)
    assert a == b  # the filter does not change which samples are drawn
    assert a != c and a.name.startswith("T1.6_k20_p0.8_n1_seed0-")
    filters = [filter_plan(cfg).run_dir for cfg in configs[:2]]
    assert filters[0].parent == filters[1].parent == a and filters[0] != filters[1]
    assert all(f.name.startswith("filter-") for f in filters)


def test_the_pool_is_part_of_the_identity_as_content_not_as_a_path(tmp_path):
    pool = REPO / "data" / "prompts" / "codeforces_sample.json"
    copy = tmp_path / "copy.json"
    copy.write_bytes(pool.read_bytes())
    same = sampling_plan(compose("generate", [f"data.path={copy}"]))
    assert same.identity == sampling_plan(compose("generate", [f"data.path={pool}"])).identity
    records = json.loads(copy.read_text())
    copy.write_text(json.dumps(records[:-1]))  # the same path, other content
    assert sampling_plan(compose("generate", [f"data.path={copy}"])).identity != same.identity
