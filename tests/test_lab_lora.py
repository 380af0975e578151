"""The lab's LoRA entries (fast): their checks, the stages they plan, and that a lab without them
is the lab as it was (same directory, same train.py runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssd.analysis import lab_paths as paths
from ssd.config import ConfigError
from ssd.pipeline import lab
from ssd.pipeline.stages import compose_stage
from ssd.tables import markdown_table
from tests.conftest import composed_stages


@pytest.mark.parametrize(("override", "key"), [
    ("lora.ranks=[0]", "lora.ranks"), ("lora.ranks=[2,2]", "lora.ranks"),
    ("lora.ranks=[two]", "lora.ranks"), ("lora.lr=0", "lora.lr")])
def test_bad_lora_entries_fail_up_front(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}="):
        lab.check_lab(compose_stage("lab", ["lora.ranks=[2]", override]))


def test_the_lab_directory_changes_only_when_ranks_are_set() -> None:
    default = lab.lab_identity(compose_stage("lab", []))
    assert lab.lab_identity(compose_stage("lab", ["lora.lr=0.01"])) == default
    with_ranks = {lab.lab_identity(compose_stage("lab", ["lora.ranks=[2]"])),
                  lab.lab_identity(compose_stage("lab", ["lora.ranks=[2,8]"])),
                  lab.lab_identity(compose_stage("lab", ["lora.ranks=[2]", "lora.lr=0.01"]))}
    assert len(with_ranks) == 3 and default not in with_ranks


def test_an_adapter_trains_on_the_same_samples_with_the_same_schedule(tmp_path: Path) -> None:
    cfg = compose_stage("lab", [])
    world = lab.check_lab(cfg)
    values = OmegaConf.to_container(cfg.lab, resolve=True)
    assert isinstance(values, dict)
    files = lab.write_world_files(world, tmp_path)

    def trained(train: dict, with_base: bool = True) -> dict:
        return composed_stages(lab.chain_runner(lab.chain_values(
            world, files, tmp_path / "base", "none", values["ssd"], train, values["eval"],
            with_base=with_base), job="test"))["train"]

    full = trained(values["train"])
    assert full["lora"]["rank"] == 0   # full fine-tuning's run, as it was
    for lr, expected in ((None, values["train"]["lr"]), (0.01, 0.01)):
        adapter = trained(lab.lora_train_values(values["train"], {"ranks": [2], "lr": lr}, 2),
                          with_base=False)
        assert adapter["lora"]["rank"] == 2 and adapter["optimizer"]["lr"] == expected
        # everything but the rate and the adapter is full fine-tuning's
        assert {**adapter, "lora": full["lora"],
                "optimizer": {**adapter["optimizer"], "lr": full["optimizer"]["lr"]}} == full


def test_a_rank_is_reported_beside_full_fine_tuning(tmp_path: Path) -> None:
    """An adapter that learned nothing (the teacher's rows: the base's optimum) keeps 0% of the
    exact gain; its sampled gain, interval and share come from its own point and the base's."""
    from ssd.identity import StagePlan
    from ssd.pipeline.stages import StageRun
    from tests.test_lab_driver import teacher_rows

    world = lab.check_lab(compose_stage("lab", []))
    rows, vocab = teacher_rows(world)
    point = {"sampled": 0.10, "samples": 2000, "exact": 0.09, "pass@5": 0.3}
    result = lab.Evaluated("ssd-lora2", points={1.1: point}, rows=rows, vocab=vocab)
    plan = StagePlan("train", tmp_path, "id", "run.json")
    plan.write_record({"trainable_parameters": 1234})
    training = StageRun("train", "train.py", [], plan, computed=True, wall_s=61.0)
    run = lab.AdapterRun(2, {"lr": 2e-3}, result, 1.1, training, None)
    base_exact = 0.08
    summary = {
        "headline": {"gain": 0.04, "gain_low": 0.02, "gain_high": 0.06, "exact_gain": 0.05},
        "exact": {"base": {"t": 0.64, "p": base_exact}, "ssd": {"t": 1.9, "p": 0.13}},
        "sampled": {"base": {"t": 0.64, "p": 0.08, "n": 2000, "se": 0.006},
                    "ssd": {"t": 1.9, "p": 0.12, "n": 2000, "se": 0.007}}}

    [row] = lab.lora_rows(world, 0.8, summary, [run])
    teacher_best = 0.083336  # the paper's teacher at top-p 0.8 (test_lab_driver)
    assert row["exact"]["p"] == pytest.approx(teacher_best, abs=1e-6)
    assert row["exact_gain"] == pytest.approx(teacher_best - base_exact, abs=1e-6)
    assert row["exact_kept"] == pytest.approx((teacher_best - base_exact) / 0.05, abs=1e-4)
    interval = paths.gain_interval(0.10, 2000, 0.08, 2000)
    assert row["sampled_gain"] == pytest.approx(0.02)
    assert (row["sampled_low"], row["sampled_high"]) == (interval["low"], interval["high"])
    assert row["sampled_kept"] == pytest.approx(0.5)
    assert (row["trainable_parameters"], row["train_s"], row["evaluate_s"]) == (1234, 61.0, None)

    table = markdown_table(*lab.lora_table({**summary, "lora": [row]}))
    assert "| full | all | 1.9000, 13.00% | +5.00 pp |" in table
    assert "| LoRA rank 2 (lr 0.002) | 1,234 |" in table
    assert "+2.00 pp (" in table and ", 50%) | 61 s, 0 s |" in table


def test_the_demos_lab_is_lab_pys_default_without_adapters() -> None:
    from ssd.pipeline.demo import lab_config

    cfg = lab_config(compose_stage("demo", []))
    lab.check_lab(cfg)
    assert list(cfg.lora.ranks) == []
    assert lab.lab_identity(cfg) == lab.lab_identity(compose_stage("lab", []))
