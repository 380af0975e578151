"""Stages as computed-once units, shared by demo.py and pipeline.py.

A stage is one run of ``generate.py``, ``train.py`` or ``evaluate.py`` with Hydra overrides (the
filter is a stage of its own, run by ``generate.py`` once the samples exist). Its run directory
and identity are the stage's own content identity (``ssd.identity``: config values plus the
digests of its inputs), so the driver composes the stage's config with the same overrides and
asks the stage's public entry for its ``StagePlan``: where it writes and what makes it complete.
A stage whose inputs do not exist yet (a training set before the filter ran) is planned once they
do. ``ensure`` then:

1. reuses the stage when its plan says complete (the completion record holds the same
   identity: a changed input is a new identity, never "complete");
2. otherwise takes the stage's lock (``<run dir>.lock``, see ``lock.py``), checks again (another
   job may have finished it while this one waited), and runs the script in a subprocess; a stage
   killed midway resumes from its own run directory (the stages' resume is exact);
3. appends one line to ``<run dir>/computations.jsonl`` when the script has completed it, under
   the lock: the record of who computed the stage, which tests and users can count.

Why subprocesses: each stage is exactly what a user would run by hand (its output streams
through, its one-line errors and exit codes stay its own), and one vLLM engine or torchrun job
per process is how the stages free their memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssd import config as checks
from ssd.config import require
from ssd.identity import StagePlan
from ssd.overrides import override_value
from ssd.pipeline.lock import StageLock

REPO_ROOT = checks.REPO_ROOT
CONF_DIR = REPO_ROOT / "conf"
COMPUTATIONS_FILE = "computations.jsonl"


class StageFailed(RuntimeError):
    """A stage script failed; its own output (above) says why. ``returncode`` is the driver's exit
    status: the stage's, or 128 + the signal that ended it (as a shell reports it)."""

    def __init__(self, message: str, returncode: int, driver: str = "demo") -> None:
        super().__init__(f"{driver}: {message}; fix the cause and run the same command again: "
                         "finished stages are reused")
        self.returncode = returncode if returncode > 0 else 128 - returncode if returncode else 1


@dataclass
class LockSettings:
    """How long a stage lock may go without a heartbeat before others break it, and how often
    its holder refreshes it and a waiter looks again (seconds)."""

    stale_after_s: float = 600.0
    heartbeat_s: float = 30.0
    poll_s: float = 2.0


@dataclass
class StageRun:
    """One stage invocation: its script, overrides and plan (run directory, identity), then what
    happened to it."""

    name: str                  # e.g. "generate", "filter", "train", "evaluate base humaneval"
    script: str                # generate.py | train.py | evaluate.py
    overrides: list[str]
    plan: StagePlan
    role: str | None = None    # evaluate only: "base" | "ssd"
    benchmark: str | None = None
    computed: bool | None = None  # True: this job ran it; False: found complete, reused
    wall_s: float | None = None
    returncode: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A multirun (``-m``) completes several runs: the plans of the others (the lab's T sweeps).
    also: list[StagePlan] = field(default_factory=list)

    @property
    def run_dir(self) -> str:
        return str(self.plan.run_dir)

    def complete(self) -> bool:
        """What the stage itself says (``StagePlan.complete``), never a status field alone."""
        return self.plan.complete() and all(plan.complete() for plan in self.also)

    def summary(self) -> dict[str, Any]:
        """What a driver's state file says about the stage (JSON-ready)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("plan", "also")}
        return {**fields, "run_dir": self.run_dir, "identity": self.plan.identity,
                **({"also": [str(plan.run_dir) for plan in self.also]} if self.also else {})}

    def record(self) -> dict[str, Any]:
        record = self.plan.record()
        if record is None:
            raise FileNotFoundError(f"{self.plan.record_path}: no completion record")
        return record


def model_overrides(model: Mapping[str, Any], preset: Mapping[str, Any]) -> list[str]:
    """``model=<preset>`` plus every model key the driver's command line changed, so a stage
    composes the same model the driver was given (e.g. ``model.path=<hub id>``)."""
    changed = [f"model.{key}={override_value(value)}" for key, value in model.items()
               if key != "name" and preset.get(key) != value]
    return [f"model={model['name']}", *changed]


def driver_model_overrides(cfg: DictConfig) -> list[str]:
    """``model_overrides`` for the driver config's ``model`` against its conf/model preset."""
    preset = OmegaConf.load(CONF_DIR / "model" / f"{cfg.model.name}.yaml")
    given = OmegaConf.to_container(cfg.model, resolve=True)
    shipped = OmegaConf.to_container(preset, resolve=True)
    assert isinstance(given, dict) and isinstance(shipped, dict)
    return model_overrides(given, shipped)


def presets(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# -- the drivers' shared checks and entry point -------------------------------------------------
def string_list(value: Any) -> bool:
    """A list of strings (a driver key holding Hydra overrides for a stage)."""
    return isinstance(value, Sequence) and not isinstance(value, str) and all(
        isinstance(v, str) for v in value)


def check_model_preset(cfg: DictConfig) -> None:
    """The driver's model is a conf/model preset (stages get it as ``model=<name>``) and valid."""
    models = presets("model")
    require(cfg, "model.name", lambda v: v in models, "a conf/model preset: " + ", ".join(models))
    checks.check_model(cfg)


def run_driver(driver: str, body: Callable[[], Any], cfg: DictConfig) -> None:
    """A driver's Hydra main around ``body``: bad input as one line (status 2), a failed stage as
    its log's tail and one line on what to do, with the stage's status, Ctrl-C as a hint to
    resume (the stages got the same Ctrl-C; their run directories keep it). ``cfg.console``
    sets what the console shows."""
    from hydra.errors import HydraException

    console.verbose = bool(cfg.console.verbose)
    console.tail_lines = int(cfg.console.tail_lines)
    if not console.verbose:  # the driver's own W&B runs and model loads: their chatter
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read at import: children
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # this process (the lab reads models in it)
    try:
        with checks.user_errors(HydraException, FileNotFoundError):
            body()
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.returncode)
    except KeyboardInterrupt:
        print(f"{driver}: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


# -- checkpoints and choices every driver forwards (pure given their inputs) ----------------------
FINAL = "final"
_EVERY = re.compile(r"^every_([1-9]\d*)$")


def checkpoint_selection(value: Any) -> bool:
    """``last``, ``all`` or ``every_<k>``: which of a training run's exports to evaluate."""
    return value in ("last", "all") or (isinstance(value, str) and bool(_EVERY.match(value)))


def checkpoint_step(name: str) -> int | None:
    """The optimizer step of an HF export folder name ``step-000250``; None for ``final``."""
    return int(name.removeprefix("step-")) if name.startswith("step-") else None


def select_checkpoints(exports: Sequence[str], spec: str) -> list[str]:
    """The exports (``step-*`` and ``final`` folder names) that ``spec`` selects, in training
    order: ``last`` the final one, ``all`` every one, ``every_<k>`` every k-th intermediate one
    and the final one."""
    steps = sorted((n for n in exports if checkpoint_step(n) is not None), key=checkpoint_step)
    final = [FINAL] if FINAL in exports else []
    if spec == "last":
        return final
    if spec == "all":
        return steps + final
    every = int(_EVERY.match(spec).group(1))  # type: ignore[union-attr]  (checked by the driver)
    return steps[every - 1::every] + final


def exports(train_run: Path) -> list[str]:
    """The finished HF export folders of a train.py run (``hf/step-*``, ``hf/final``)."""
    return sorted(p.name for p in (train_run / "hf").iterdir()
                  if p.is_dir() and not p.name.endswith(".partial"))


def forwarded_choices(cfg: DictConfig) -> list[str]:
    """What every stage gets from the driver: ``experiment=<name>`` as this Hydra job chose it,
    and its logger, W&B runs grouped by the sweep (the grid is one W&B group)."""
    from hydra.core.hydra_config import HydraConfig

    from ssd.tracking import sweep_group

    forwarded = []
    if HydraConfig.initialized():
        experiment = HydraConfig.get().runtime.choices.get("experiment")
        if experiment not in (None, "null"):
            forwarded.append(f"experiment={experiment}")
    w = cfg.logger.wandb
    if w is None:
        return [*forwarded, "logger=none", f"logger.csv={override_value(cfg.logger.csv)}"]
    return [*forwarded, "logger=wandb", f"logger.csv={override_value(cfg.logger.csv)}",
            *(f"logger.wandb.{key}={override_value(w[key])}"
              for key in ("project", "entity", "mode")),
            f"logger.wandb.group={override_value(w.group or sweep_group())}"]


# -- composing like the stages do ---------------------------------------------------------------
def compose_stage(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """The config ``<config_name>.py`` will see for ``overrides``.

    Inside a Hydra app (demo.py, pipeline.py) the app's own config search path (conf/) is reused;
    elsewhere (tests, library use) a temporary one is set up for the call."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def generate_stages(overrides: Sequence[str]) -> tuple[StageRun, Path]:
    """The sampling stage of generate.py, and the training set its filter will write (known
    before anything runs; the filter stage itself is planned once the samples exist)."""
    import ssd.generation as generation

    cfg = compose_stage("generate", overrides)
    generation.validate(cfg)  # fail in a second on a bad pool or value, not after minutes
    stage = StageRun("generate", "generate.py", list(overrides), generation.sampling_plan(cfg))
    return stage, generation.train_set_path(cfg)


def filter_stage(overrides: Sequence[str]) -> StageRun:
    """The filter step over complete samples (generate.py again: it only filters)."""
    import ssd.generation as generation

    cfg = compose_stage("generate", overrides)
    return StageRun("filter", "generate.py", list(overrides), generation.filter_plan(cfg))


def check_train(overrides: Sequence[str]) -> None:
    """Every train.py value but the training set, before the samples exist."""
    import ssd.training as training

    training.validate_settings(compose_stage("train", overrides))


def train_stage(overrides: Sequence[str]) -> StageRun:
    """train.py, planned once its training set exists (its identity is the set's digest)."""
    import ssd.training as training

    cfg = compose_stage("train", overrides)
    training.validate(cfg)
    return StageRun("train", "train.py", list(overrides), training.training_plan(cfg))


def evaluate_stage(name: str, overrides: Sequence[str], **fields: Any) -> StageRun:
    """An evaluate.py stage, planned once its model exists (its identity is the weights')."""
    import ssd.evaluation as evaluation

    cfg = compose_stage("evaluate", overrides)
    evaluation.check_eval(cfg)
    return StageRun(name, "evaluate.py", list(overrides), evaluation.evaluation_plan(cfg),
                    **fields)


def sweep_stage(name: str, overrides: Sequence[str], key: str, values: Sequence[Any],
                **fields: Any) -> StageRun:
    """One ``evaluate.py -m`` over ``key``'s values (one engine for all of them), complete when
    every job is; ``plan`` is the first value's, ``also`` the others'."""
    plans = [evaluate_stage(name, [*overrides, f"{key}={override_value(v)}"]).plan
             for v in values]
    sweep = [*overrides, f"{key}=" + ",".join(override_value(v) for v in values)]
    return StageRun(name, "evaluate.py", ["-m", *sweep], plans[0], also=plans[1:], **fields)


# -- running ------------------------------------------------------------------------------------
@dataclass
class Console:
    """What a driver prints of its stages (``conf/console``): by default one line per stage and
    the headline numbers, each stage's own output (engine, Lightning, W&B chatter) going to the
    stage's log in its run directory; ``verbose`` streams it to the console too."""

    verbose: bool = False
    tail_lines: int = 40       # of a failed stage's log, printed on the console


# The driver process's console settings: set once by ``run_driver`` from the driver's config.
console = Console()
STAGE_LOG_SUFFIX = ".log"
_TQDM = re.compile(r"\d+%\|")


def stage_log(stage: StageRun) -> Path:
    """``<run dir>/<script>.log``: appended to by every run of the stage (a resumed run's output
    follows the killed one's)."""
    return Path(stage.run_dir) / (Path(stage.script).stem + STAGE_LOG_SUFFIX)


def readable_lines(raw: str) -> list[str]:
    """A log as a person reads it: of the carriage-return redraws of a progress bar, the last."""
    # split on newlines only: str.splitlines() would also split at every carriage return
    return [shown for line in raw.split("\n") if (shown := line.rstrip("\r").rsplit("\r", 1)[-1])]


def latest_progress(raw: str) -> str | None:
    """The newest progress-bar state (tqdm's ``12%|...| 3/25 [00:04<00:30, ...]``) in a log's
    tail, if the stage is showing one."""
    for piece in reversed(re.split(r"[\r\n]", raw)):
        if _TQDM.search(piece):
            return piece.strip()
    return None


def _show_progress(log: Path, name: str, done: threading.Event) -> None:
    """Redraw one console line with the stage's newest progress bar (ETA included) until done."""
    width = shutil.get_terminal_size().columns - 1
    shown = False
    while not done.wait(1.0):
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            state = latest_progress(handle.read().decode(errors="replace"))
        if state:
            print(f"\r    {name}: {state}"[:width].ljust(width), end="", flush=True)
            shown = True
    if shown:
        print("\r" + " " * width + "\r", end="", flush=True)


def run_stage(stage: StageRun, label: str, driver: str) -> None:
    """Run the stage's script in this process group (so Ctrl-C or a kill of the driver reaches
    it), its output appended to its log (and streamed through with ``console.verbose``)."""
    command = [sys.executable, str(REPO_ROOT / stage.script), *stage.overrides]
    log = stage_log(stage)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{driver} {label} {stage.name}: computing -> {stage.run_dir}", flush=True)
    if console.verbose:
        print("    " + " ".join([Path(command[1]).name, *stage.overrides]), flush=True)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as handle:
        handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                     + " ".join([Path(command[1]).name, *stage.overrides]) + "\n")
        handle.flush()
        if console.verbose:
            returncode = _tee(command, env, handle)
        else:
            done = threading.Event()
            follower = threading.Thread(target=_show_progress, args=(log, stage.name, done),
                                        daemon=True)
            if sys.stdout.isatty():
                follower.start()
            try:
                returncode = subprocess.run(command, env=env, stdout=handle,
                                            stderr=subprocess.STDOUT).returncode
            finally:
                done.set()
                if follower.is_alive():
                    follower.join()
    stage.wall_s = round(time.perf_counter() - started, 3)
    stage.returncode = returncode
    if returncode != 0:
        if not console.verbose:
            tail = readable_lines(log.read_text(errors="replace"))[-console.tail_lines:]
            print(f"--- the last {len(tail)} lines of {log}:", *tail, "---", sep="\n",
                  file=sys.stderr, flush=True)
        raise StageFailed(f"{stage.script} exited with status {returncode} (its log: {log})",
                          returncode, driver)
    if not stage.complete():
        raise StageFailed(f"{stage.script} finished but {stage.plan.record_path} does not say "
                          f"complete for identity {stage.plan.identity} (its log: {log})", 1,
                          driver)
    print(f"{driver} {label} {stage.name}: done in {stage.wall_s:.0f} s", flush=True)


def _tee(command: list[str], env: dict[str, str], log: Any) -> int:
    """Run ``command`` with its output both on the console and in ``log``."""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log.write(chunk.decode(errors="replace"))
            log.flush()
    return process.returncode


def ensure(stage: StageRun, label: str, driver: str, lock: LockSettings, job: str) -> StageRun:
    """Make ``stage`` complete, computing it only if no one has (see the module docstring)."""
    if stage.complete():
        stage.computed = False
        print(f"{driver} {label} {stage.name}: complete, reused: {stage.run_dir}", flush=True)
        return stage

    def waiting(owner: dict[str, Any] | None) -> None:
        who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another job"
        print(f"{driver} {label} {stage.name}: {who} is computing it; waiting", flush=True)

    run_dir = Path(stage.run_dir)
    with StageLock(run_dir.with_name(run_dir.name + ".lock"), stale_after_s=lock.stale_after_s,
                   heartbeat_s=lock.heartbeat_s, poll_s=lock.poll_s, on_wait=waiting) as held:
        for reason in held.broken:
            print(f"{driver} {label} {stage.name}: took over a stale lock ({reason})",
                  flush=True)
        if stage.complete():
            stage.computed = False
            print(f"{driver} {label} {stage.name}: completed by another job, reused",
                  flush=True)
            return stage
        started = time.time()
        resumed = run_dir.exists()
        run_stage(stage, label, driver)
        stage.computed = True
        with open(run_dir / COMPUTATIONS_FILE, "a") as handle:
            handle.write(json.dumps({
                "job": job, "host": socket.gethostname(), "pid": os.getpid(),
                "started": started, "wall_s": stage.wall_s, "resumed": resumed,
                "overrides": stage.overrides}) + "\n")
    return stage


def computations(run_dir: Path) -> list[dict[str, Any]]:
    """The stage's computation records (one per completed computation)."""
    path = run_dir / COMPUTATIONS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
