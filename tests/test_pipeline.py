"""pipeline.py without engines: checkpoint selection, the declared cell, bad grid values, the stage
lock and the grid report on synthetic cells (the grid end to end: tests/test_grid.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.overrides import truncation_overrides
from ssd.pipeline.grid import cell_runner, check_grid
from ssd.pipeline.grid_report import build_grid_report, write_grid_report
from ssd.pipeline.lock import StageLock, process_start, stale_reason
from ssd.pipeline.stages import driver_model_overrides, select_checkpoints
from tests.conftest import REPO, cli_error, compose, composed_stages

# -- checkpoint selection -------------------------------------------------------------------------
EXPORTS = ["final", "step-000004", "step-000002", "step-000006", "step-000008"]


def test_checkpoint_selection_follows_training_order() -> None:
    assert select_checkpoints(EXPORTS, "last") == ["final"]
    assert select_checkpoints(EXPORTS, "all") == [
        "step-000002", "step-000004", "step-000006", "step-000008", "final"]
    assert select_checkpoints(EXPORTS, "every_2") == ["step-000004", "step-000008", "final"]
    assert select_checkpoints(EXPORTS, "every_3") == ["step-000006", "final"]
    assert select_checkpoints(["final"], "all") == ["final"]


@pytest.mark.parametrize(("override", "message"), [
    ("eval.checkpoints=every_0", "eval.checkpoints"),
    ("eval.checkpoints=best", "last, all or every_<k>"),
    ("gen.truncation=top3", "a conf/truncation preset"),
    ("eval.truncation=k10_p0", "k<top_k>_p<top_p>"),
    ("gen.truncation=k10_p1.5", "0 < top_p <= 1"),
    ("eval.base_decoding=best", "table4 .* or grid"),
    ("gen.T=0", "a temperature > 0"),
    ("eval.benchmark=nope", "a conf/eval preset"),
    ("lock.heartbeat_s=900", "< lock.stale_after_s"),
    ("gen.data=sft", "a conf/data prompt pool"),
])
def test_bad_grid_values_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_grid(compose("pipeline", [override]))


# The configs a cell's stages composed to with the grid's own override builders, recorded before
# the cell became a declared study (conf/study/grid.yaml): the same configs, the same stage
# identities, the same numbers.
RECORDED = json.loads((REPO / "tests" / "fixtures" / "grid_stage_configs.json").read_text())


def composed_cell(cfg) -> dict[str, dict]:
    """The cell's stages without the forwarded experiment and logger (as recorded)."""
    check_grid(cfg)
    runner = cell_runner(cfg, "test")
    runner.wiring = driver_model_overrides(cfg)
    return composed_stages(runner)


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_the_declared_cell_composes_each_stage_as_the_grid_did_before(case: str) -> None:
    recorded = RECORDED[case]
    found = composed_cell(compose("pipeline", recorded["overrides"]))
    assert sorted(found) == sorted(recorded["stages"])
    for name, config in found.items():
        assert config == recorded["stages"][name], name


def test_a_truncation_is_a_preset_or_its_values_and_both_reach_the_same_stage() -> None:
    import ssd.generation as generation

    assert truncation_overrides("none") == ["truncation=none"]
    assert truncation_overrides("k10_p1.0") == ["truncation=none", "truncation.top_k=10",
                                                "truncation.top_p=1.0"]
    plans = {}
    for spec in ("top20_p08", "k20_p0.8", "k10_p1.0"):
        stage = OmegaConf.create(composed_cell(compose(
            "pipeline", ["model=tiny", f"gen.truncation={spec}"]))["generate"])
        plans[spec] = (stage.truncation.top_k, stage.truncation.top_p,
                       generation.sampling_plan(stage).identity)
    assert plans["k10_p1.0"][:2] == (10, 1.0)  # top-k 10 alone, as the paper's Figure 10
    assert plans["k20_p0.8"] == plans["top20_p08"]  # the same values: the same generate run


@pytest.mark.parametrize(("base_decoding", "expected"), [("table4", (0.7, 20, 0.8)),
                                                         ("grid", (1.3, 0, 0.95))])
def test_the_base_model_is_evaluated_at_table_4s_decoding_or_the_grids(
        base_decoding: str, expected: tuple) -> None:
    found = composed_cell(compose("pipeline", [
        "model=tiny", "eval.T=1.3", "eval.truncation=k0_p0.95",
        f"eval.base_decoding={base_decoding}"]))
    base, checkpoint = found["evaluate base"], found["evaluate"]
    assert (base["decoding"]["T"], base["truncation"]["top_k"],
            base["truncation"]["top_p"]) == expected
    assert (checkpoint["decoding"]["T"], checkpoint["truncation"]["top_k"]) == (1.3, 0)
    assert "evaluate base" not in composed_cell(compose("pipeline", ["model=tiny",
                                                                     "eval.base=false"]))


def test_bad_grid_value_on_the_command_line_is_one_line_and_status_2(tmp_path: Path) -> None:
    assert cli_error("pipeline", ["eval.checkpoints=best"], tmp_path) == [
        "error: eval.checkpoints=best: must be last, all or every_<k> (k >= 1)"]


# -- the lock -------------------------------------------------------------------------------------
def _hold(path: str, log: str, seconds: float) -> None:
    with StageLock(Path(path), heartbeat_s=0.2, stale_after_s=5, poll_s=0.01):
        with open(log, "a") as handle:
            handle.write(f"in {time.monotonic()}\n")
        time.sleep(seconds)
        with open(log, "a") as handle:
            handle.write(f"out {time.monotonic()}\n")


def test_the_lock_admits_one_process_at_a_time(tmp_path: Path) -> None:
    lock, log = tmp_path / "stage.lock", tmp_path / "log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hold, args=(str(lock), str(log), 0.3)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["in", "out"] * 4  # never two "in" in a row
    assert not lock.exists()


def test_a_lock_whose_owner_died_is_taken_over_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "stage.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(dead.pid)
    dead.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start": start,
                                "token": "old"}))
    started = time.monotonic()
    with StageLock(lock, poll_s=5) as held:
        assert held.holds()
    assert time.monotonic() - started < 2
    assert held.broken and "no longer running" in held.broken[0]


def test_a_live_lock_elsewhere_waits_and_a_silent_one_goes_stale() -> None:
    now = time.time()
    here = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}
    elsewhere = {"host": "node-17", "pid": 1, "start": "1"}
    assert stale_reason(here, now - 10_000, now, socket.gethostname(), 600) is not None  # silent
    assert stale_reason(here, now - 5, now, socket.gethostname(), 600) is None
    assert stale_reason(elsewhere, now - 5, now, socket.gethostname(), 600) is None
    assert "no heartbeat" in stale_reason(elsewhere, now - 601, now, socket.gethostname(), 600)
    assert stale_reason({**here, "start": "0"}, now, now, socket.gethostname(), 600) is not None


def test_a_waiter_breaks_a_lock_whose_heartbeat_stopped(tmp_path: Path) -> None:
    lock = tmp_path / "stage.lock"
    lock.write_text(json.dumps({"host": "node-17", "pid": 1, "start": "1", "token": "gone"}))
    os.utime(lock, (time.time() - 30, time.time() - 30))
    with StageLock(lock, stale_after_s=20, heartbeat_s=1, poll_s=0.05) as held:
        assert held.holds() and "no heartbeat" in held.broken[0]


def test_the_heartbeat_keeps_a_long_held_lock_fresh(tmp_path: Path) -> None:
    lock = tmp_path / "stage.lock"
    with StageLock(lock, stale_after_s=1.0, heartbeat_s=0.1):
        os.utime(lock, (time.time() - 5, time.time() - 5))
        time.sleep(0.5)
        assert time.time() - lock.stat().st_mtime < 1.0


# -- the report on synthetic cells ----------------------------------------------------------------
def _cell(t_train: float, truncation: str, t_eval: float, by_step: dict[int, float],
          base: float) -> dict:
    def metrics(p1: float) -> dict:
        return {"ks": [1, 5], "overall": {"pass@1": p1, "pass@5": min(1.0, 2 * p1)},
                "per_difficulty": {"easy": {"pass@1": p1, "pass@5": min(1.0, 2 * p1)}},
                "problems": 4, "samples": 40}

    return {"t_train": t_train, "truncation": truncation, "t_eval": t_eval,
            "eval_truncation": "evaluation", "benchmark": "b", "model": "m",
            "checkpoints": "all", "base": metrics(base),
            "evaluations": [{"checkpoint": f"step-{s:06d}", "step": s, **metrics(p)}
                            for s, p in by_step.items()]}


def synthetic_grid() -> list[dict]:
    """pass@1 = 0.5 - (T_eff - 1.2)^2 at the best checkpoint (step 4), lower at step 2."""
    cells = []
    for truncation in ("none", "top20_p08"):
        for t_train in (0.8, 1.2, 1.6):
            for t_eval in (0.6, 0.8, 1.0):
                p = 0.5 - (t_train * t_eval - 1.2) ** 2
                cells.append(_cell(t_train, truncation, t_eval, {2: p - 0.1, 4: p},
                                   base=0.2 + 0.01 * t_eval))
    return cells


def test_grid_report_reads_the_best_checkpoint_and_fits_the_peak(tmp_path: Path) -> None:
    cells = synthetic_grid()
    cells[0]["training_set"] = {"tokens": "sampled_ids", "samples": 8, "ended": 3, "open": 5}
    cells[0]["diagnostics"] = {"code_block": 0.5, "parses": 0.25, "mixed_script": 0.125}
    cells[3]["training_set"] = {"tokens": "sampled_ids", "samples": 8, "ended": 8, "open": 0}
    markdown, summary = build_grid_report(cells + cells[:3])  # a cell seen twice counts once
    assert len(summary["rows"]) == 2 * 3 * 3 * 2
    assert all(r["checkpoint"] == "step-000004" for r in summary["best_per_cell"])
    for fit in summary["fits"]:
        assert fit["r_squared"] == pytest.approx(1.0) and fit["peak_t_eff"] == pytest.approx(1.2)
    assert summary["best"]["t_train"] * summary["best"]["t_eval"] == pytest.approx(1.2, abs=0.05)
    assert summary["base_best"]["t_eval"] == 1.0
    assert "## Best cell against the base model (Section 3.3)" in markdown
    # pass@1 and pass@5, overall then per difficulty (pass@5 = min(1, 2 pass@1) here)
    assert "| pass@1 | pass@5 | pass@1/easy | pass@5/easy | pass@1 95% CI |" in markdown
    assert "| 1.2 | none | step-000004 | 1 | 1.2 | 50.0% | 100.0% | 50.0% | 100.0% |" in markdown
    assert "| 0.8 | none | step-000004 | 0.6 | 0.48 | -1.8% | -3.7% | -1.8% | -3.7% |" in markdown
    assert {f["group"] for f in summary["fits_pass@5"]} == {"none", "top20_p08"}
    # cells from before eval.base_decoding: the base at every T_eval, the grid's own decoding
    assert {b["reference"] for b in summary["base"]} == {"grid"} and len(summary["base"]) == 3
    assert "Base model reference: the grid's own decoding" in markdown
    # what the cell trained on, and what its samples looked like (– from an older generate run)
    assert "| 0.8 | none | 8 | 3 | 5 | sampled_ids | 50.0% | 25.0% | 12.5% |" in markdown
    assert "| 1.2 | none | 8 | 8 | 0 | sampled_ids | – | – | – |" in markdown
    for i, cell in enumerate(cells):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "cell.json").write_text(json.dumps(cell))
    logger = {"wandb": {"project": "ssd", "entity": None, "mode": "offline", "group": None},
              "csv": True}
    write_grid_report(tmp_path, OmegaConf.create({"logger": logger}))
    for name in ("grid.md", "grid.json", "teff.png", "heatmap_none.png", "heatmap_top20_p08.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| pass@5 | none | 9 | 1 | concave |" in (tmp_path / "grid.md").read_text()
    # W&B: one offline run in the sweep directory, the grid's rows as a W&B table
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/grid/table_*.table.json"))
    assert len(tables) == 1 and len(json.loads(tables[0].read_text())["data"]) == 36


def test_the_grid_report_compares_every_cell_with_the_table_4_base() -> None:
    cells = synthetic_grid()
    for cell in cells:  # one base evaluation at the recipe's baseline decoding, in every cell
        cell["base_decoding"] = "table4"
        cell["base"].update({"t_eval": 0.7, "top_k": 20, "top_p": 0.8, "overall": {
            "pass@1": 0.25, "pass@5": 0.5}})
    markdown, summary = build_grid_report(cells)
    [base] = summary["base"]
    assert (base["reference"], base["t_eval"], base["truncation"]) == ("table4", 0.7, "baseline")
    assert ("Base model reference: Table 4's decoding (`decoding=baseline truncation=baseline`: "
            "T 0.7, top-k 20, top-p 0.8)") in markdown
    assert "| table4 | 0.7 | baseline | 25.0% | 50.0% |" in markdown
    assert "- Base model, best decode-only setting in the grid: pass@1 25.0% at T 0.7" in markdown
