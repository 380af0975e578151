"""Experiment tracking shared by the stages: one W&B run per job, kept inside the run directory.

The ``logger`` config group decides everything: ``logger.wandb`` null (``logger=none``) logs
nothing; otherwise project, entity, group and mode (offline by default) come from it. The W&B
files go to ``<run dir>/wandb/`` rather than the working directory, so every stage's run directory
holds its own ``offline-run-*`` folder next to the outputs it describes (``wandb sync`` uploads it
later). Metric names carry the stage as a prefix (``generate/...``, ``eval/...``), so runs of
different stages can share one project without their charts mixing.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# A table to log: its column names and rows.
Table = tuple[Sequence[str], Sequence[Sequence[Any]]]


def sweep_group() -> str | None:
    """A W&B group for this Hydra multirun ("<main>_<date>_<time>"), or None outside a sweep.

    Jobs of one sweep then share a group whether they ran in one process (the basic launcher) or
    as separate submitit jobs, which see the same ``hydra.sweep.dir``.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    return group_of(Path(hydra.sweep.dir))


def group_of(sweep_dir: Path) -> str:
    """The W&B group of the multirun whose sweep directory is ``sweep_dir``."""
    parts = [p for p in sweep_dir.parts if p.strip("/")]
    return "_".join(parts[-3:])


def wandb_enabled(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "logger.wandb") is not None


def log_wandb(cfg: DictConfig, out: Path, *, stage: str, run_id: str,
              metrics: Mapping[str, float], tables: Mapping[str, Table] | None = None,
              name: str | None = None, group: str | None = None) -> dict[str, Any] | None:
    """Log one job's final ``metrics`` (and ``tables``) as one W&B run under ``out/wandb``.

    ``run_id`` should be derived from the run's identity: a recomputation of the same run then
    resumes the same W&B run instead of adding a look-alike. The resolved config is attached so a
    run can be reproduced from W&B alone. Returns what to record about the run (None when W&B is
    off).
    """
    if not wandb_enabled(cfg):
        return None
    import wandb

    w = cfg.logger.wandb
    out.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=w.project, entity=w.entity, group=w.group or group or sweep_group(),
        name=name or out.name, dir=str(out.resolve()), mode=w.mode, id=run_id, resume="allow",
        job_type=stage, config=OmegaConf.to_container(cfg, resolve=True),
        # Several runs in one process (a multirun with the basic launcher, tests) must not
        # attach to the previous one.
        reinit="finish_previous",
        # Logging happens once the stage's work is done: capturing the console would only wrap
        # sys.stdout/stderr (under tqdm and Hydra's logging) for nothing.
        settings=wandb.Settings(console="off"),
    )
    try:
        logged: dict[str, Any] = dict(metrics)
        for key, (columns, rows) in (tables or {}).items():
            logged[key] = wandb.Table(columns=list(columns), data=[list(row) for row in rows])
        run.log(logged)
        run.summary.update(dict(metrics))
        return {"project": w.project, "group": run.group, "id": run.id, "mode": w.mode,
                "dir": str(Path(run.dir).parent)}
    finally:
        run.finish()
        # finish() returns once the W&B service has the exit record, but the service completes
        # the offline transaction log (summary included) later; without waiting, the run
        # directory can hold a partial log when the stage returns, and a job killed right after
        # (or a reader in this process) sees no metrics. teardown() waits for the service; the
        # next run starts a new one (well under a second).
        wandb.teardown()


def write_csv(path: Path, metrics: Mapping[str, float]) -> None:
    """The metrics as one CSV row (logger.csv): header of metric names, then their values."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(metrics))
        writer.writeheader()
        writer.writerow(dict(metrics))
