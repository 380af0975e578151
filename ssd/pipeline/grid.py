"""The temperature grid (paper Section 3.4): one pipeline.py job per (T_train, truncation, T_eval).

A job makes its cell's stages complete through ``stages.ensure`` (each computed at most once,
whichever job or command needs it first) and writes ``cell.json`` into its Hydra job folder:

    generate.py  at T_train and the training truncation          (shared by every T_eval)
    filter       generate.py's filter step over those samples    (shared by every T_eval)
    train.py     on its training set                             (shared by every T_eval)
    evaluate.py  each selected checkpoint at T_eval              (one per checkpoint and T_eval)
    evaluate.py  the base model (eval.base) at Table 4's decoding  (shared by every cell)
                 or, with eval.base_decoding=grid, at T_eval        (shared by every T_train)

A truncation (``gen.truncation``, ``eval.truncation``) is a conf/truncation preset or its values,
``k<top_k>_p<top_p>`` (``k10_p1.0``: top-k 10 alone); the stages get ``truncation=<preset>``
or ``truncation=none truncation.top_k=.. truncation.top_p=..`` (their identity is the values,
so ``top20_p08`` and ``k20_p0.8`` share their runs).

``GridReport`` (a Hydra callback) reads the cells when the multirun ends and writes, into the
sweep directory: ``grid.md`` and ``grid.json`` (pass@1 and pass@5, overall and per difficulty, of
every (T_train, truncation, checkpoint, T_eval), the T_eff fits, the best cell against the base
model), ``teff.png`` (Figure 3a: best-checkpoint pass@1 and pass@5 against T_eff = T_train *
T_eval, a quadratic fit per truncation) and ``heatmap_<truncation>.png`` (pass@1 and pass@5 over
T_train x T_eval); with W&B on, the table as a W&B table in one run of the sweep's group.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssd import config as checks
from ssd.config import is_int, is_number, require
from ssd.overrides import BASE_DECODINGS, truncation_values
from ssd.pipeline.stages import (
    check_model_preset,
    checkpoint_selection,
    driver_model_overrides,
    forwarded_choices,
    presets,
    string_list,
)
from ssd.studies import StudyRunner, read_stages

CELL_FILE = "cell.json"
# -- validation and selection (pure) ------------------------------------------------------------
def check_grid(cfg: DictConfig) -> None:
    """One-line errors naming the key, before any stage starts."""
    check_model_preset(cfg)
    for key in ("gen.T", "eval.T"):
        require(cfg, key, lambda v: is_number(v) and v > 0, "a temperature > 0")
    truncations = presets("truncation")
    for key in ("gen.truncation", "eval.truncation"):
        require(cfg, key, lambda v: isinstance(v, str) and (v in truncations
                                                            or truncation_values(v) is not None),
                "a conf/truncation preset (" + ", ".join(truncations) + ") or k<top_k>_p<top_p> "
                "with top_k >= 0 and 0 < top_p <= 1, e.g. k10_p1.0")
    pools = [p for p in presets("data") if p != "sft"]
    require(cfg, "gen.data", lambda v: v in pools, "a conf/data prompt pool: " + ", ".join(pools))
    require(cfg, "gen.limit", lambda v: v is None or (is_int(v) and v >= 1),
            "an integer >= 1, or null for the whole pool")
    benches = presets("eval")
    require(cfg, "eval.benchmark", lambda v: v in benches,
            "a conf/eval preset: " + ", ".join(benches))
    require(cfg, "eval.checkpoints",
            checkpoint_selection, "last, all or every_<k> (k >= 1)")
    require(cfg, "eval.base", lambda v: isinstance(v, bool), "true or false")
    require(cfg, "eval.base_decoding", lambda v: v in BASE_DECODINGS,
            "table4 (the recipe's baseline decoding, as the paper compares) or grid (the base "
            "model at every T_eval with eval.truncation)")
    for stage in ("gen", "train", "eval"):
        require(cfg, f"{stage}.overrides", string_list,
                "a list of Hydra overrides, e.g. '[engine.max_num_seqs=8]'")
    checks.check_logger(cfg)
    checks.stats_options(cfg)  # read by the grid report, after every cell
    require(cfg, "lock.stale_after_s", lambda v: is_number(v) and v > 0, "> 0 seconds")
    require(cfg, "lock.heartbeat_s", lambda v: is_number(v) and 0 < v < cfg.lock.stale_after_s,
            "> 0 and < lock.stale_after_s (a live lock would look stale)")
    require(cfg, "lock.poll_s", lambda v: is_number(v) and v > 0, "> 0 seconds")


def cell_runner(cfg: DictConfig, job: str, label: str = "") -> StudyRunner:
    """The cell's declared stages (``study.stages``, conf/study/grid.yaml: their overrides read
    gen.*, train.* and eval.*), each given the model, the experiment and the logger first."""
    stages = OmegaConf.to_container(cfg.study.stages, resolve=True)
    return StudyRunner(cfg, read_stages(stages, checkpoint_selection), job, driver="pipeline",
                       wiring=[*driver_model_overrides(cfg), *forwarded_choices(cfg)],
                       label=lambda _: label)


# -- one cell ------------------------------------------------------------------------------------
def _metrics(record: dict[str, Any]) -> dict[str, Any]:
    """What the grid reads from an evaluate.py metrics.json, its problem set and grader
    included (the grid report states them). The run directory made absolute (evaluate.py ran in
    this process's working directory): the grid report reads its results.jsonl for the
    bootstrap, from wherever the report is written."""
    run_dir = record.get("run_dir")
    return {"ks": record["ks"], "overall": record["overall"],
            "per_difficulty": record["per_difficulty"], "problems": record["problems"],
            "t_eval": record.get("t_eval"),
            "top_k": (record.get("truncation") or {}).get("top_k"),
            "top_p": (record.get("truncation") or {}).get("top_p"),
            "samples": record["samples"], "problem_set": record.get("problem_set"),
            "grader": record.get("grader"),
            "run_dir": str(Path(run_dir).resolve()) if run_dir else None}


def job_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def run_cell(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Make every stage of this cell complete and write ``out/cell.json``; returns the cell."""
    from ssd.records import write_json_atomic

    check_grid(cfg)
    job = str(out)
    label = f"[T_train {cfg.gen.T:g}, {cfg.gen.truncation}, T_eval {cfg.eval.T:g}]"
    print(f"pipeline {label}: {cfg.model.name} on {cfg.gen.data} -> {cfg.eval.benchmark}; "
          f"checkpoints: {cfg.eval.checkpoints}", flush=True)

    # Every config is checked before anything runs (the plan); a stage whose inputs are another
    # stage's outputs is planned once they exist (its identity is their content).
    runner = cell_runner(cfg, job, label)
    runner.plan()
    steps = {step.spec.name: step for step in runner.run()}
    stages = [run for step in steps.values() for run in step.runs]
    generated, training = steps["generate"].runs[0], steps["train"].runs[0]
    evaluations = [{"checkpoint": run.extra["checkpoint"], "step": run.extra["step"],
                    **_metrics(run.record())} for run in steps["evaluate"].runs]
    base = steps["evaluate base"].runs[0] if "evaluate base" in steps else None

    train_record = training.record()
    cell = {
        "t_train": float(cfg.gen.T), "truncation": str(cfg.gen.truncation),
        "t_eval": float(cfg.eval.T), "eval_truncation": str(cfg.eval.truncation),
        "benchmark": str(cfg.eval.benchmark), "model": str(cfg.model.name),
        "checkpoints": str(cfg.eval.checkpoints),
        "evaluations": evaluations,
        "base_decoding": str(cfg.eval.base_decoding),
        "base": _metrics(base.record()) if base is not None else None,
        "training_set": train_record.get("training_set"),
        # what the samples look like (none for a generate run from before the diagnostics)
        "diagnostics": generated.record().get("diagnostics"),
        "stages": [{k: v for k, v in s.summary().items() if k != "overrides"} for s in stages],
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / CELL_FILE, cell)
    computed = sum(bool(s.computed) for s in stages)
    best = max((e["overall"].get("pass@1", math.nan) for e in evaluations), default=math.nan)
    print(f"pipeline {label}: done ({computed} of {len(stages)} stages computed by this job, "
          f"the rest reused); best pass@1 {best:.4f}", flush=True)
    return cell
