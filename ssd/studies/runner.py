"""The study runner: a study's declared stages (``ssd.studies.spec``) through ``stages.ensure``.

    python study.py study=main experiment=qwen3-4b-instruct-2507
    python study.py study=main dry_run=true          # the plan: nothing runs

Every stage is the stage script a user would run by hand, with the overrides the study declares
(after the wiring: the model, the experiment, the logger, and what feeds it) and then the scale's
for its script (``conf/scale``). Its run directory is its content identity, so a study reuses
whatever any study, grid, demo or hand-run command already computed, computes the rest at most
once under a lock, and resumes exactly after a kill. The plan is printed first: each stage
complete (reused), to compute, or waiting for its inputs (a stage fed by another is planned once
that one exists: its identity is their content), with the tokens it samples or trains at most.

Written into ``runs/study/<study>/<experiment or model>/<hash>/``: ``study.json`` (every stage:
name, role, labels, checkpoint, run directories, computed or reused) and the study's report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssd import config as checks
from ssd.config import ConfigError, is_number, require
from ssd.identity import config_values, stage_identity
from ssd.pipeline.stages import (
    LockSettings,
    StageRun,
    check_model_preset,
    check_train,
    checkpoint_selection,
    checkpoint_step,
    compose_stage,
    driver_model_overrides,
    ensure,
    evaluate_stage,
    exports,
    filter_stage,
    forwarded_choices,
    generate_stages,
    override_value,
    select_checkpoints,
    string_list,
    sweep_stage,
    train_stage,
)
from ssd.records import write_json_atomic
from ssd.studies.spec import BEST_OF, SCRIPTS, StageSpec, read_stages

STUDY_FILE = "study.json"
STUDY_FORMAT = 1
# What decides a study's outputs (its folder's hash).
IDENTITY_KEYS = ["study", "scale", "model", "recipe", "stats"]


@dataclass
class Step:
    """A declared stage and what the runner made of it: its stage runs (one per checkpoint), or
    why it cannot be planned yet."""

    spec: StageSpec
    runs: list[StageRun] = field(default_factory=list)
    waiting: str | None = None
    estimate: str = ""

    def summary(self) -> dict[str, Any]:
        return {"name": self.spec.name, "script": self.spec.script, "role": self.spec.role,
                "labels": dict(self.spec.labels),
                "sweep": None if self.spec.sweep is None else {
                    "key": self.spec.sweep[0], "values": list(self.spec.sweep[1])},
                "runs": [{**run.summary(), "checkpoint": run.extra.get("checkpoint"),
                          "step": run.extra.get("step")} for run in self.runs]}


# -- checks (one line naming the key) -----------------------------------------------------------
def study_specs(cfg: DictConfig) -> list[StageSpec]:
    """The study's keys and declared stages, checked before any stage is composed."""
    from ssd.studies.reports import REPORTS

    require(cfg, "study.name", lambda v: isinstance(v, str) and v.isidentifier(),
            "a name (letters, digits, _)")
    driver = cfg.study.get("driver")
    if driver:  # a driver's own chain: its stages read that script's keys
        raise ConfigError(f"study={cfg.study.name}: {driver}.py runs this chain (its stages read "
                          f"{driver}.py's keys); run python {driver}.py")
    require(cfg, "study.report", lambda v: v in REPORTS, "one of " + ", ".join(REPORTS))
    require(cfg, "dry_run", lambda v: isinstance(v, bool), "true or false")
    for script in SCRIPTS:
        require(cfg, f"scale.{script}", string_list,
                "a list of Hydra overrides appended to every " + script + " stage")
    check_model_preset(cfg)
    checks.check_logger(cfg)
    checks.stats_options(cfg)
    require(cfg, "lock.stale_after_s", lambda v: is_number(v) and v > 0, "> 0 seconds")
    require(cfg, "lock.heartbeat_s", lambda v: is_number(v) and 0 < v < cfg.lock.stale_after_s,
            "> 0 and < lock.stale_after_s (a live lock would look stale)")
    require(cfg, "lock.poll_s", lambda v: is_number(v) and v > 0, "> 0 seconds")
    stages = OmegaConf.to_container(checks.get_value(cfg, "study.stages"), resolve=True)
    report = REPORTS[str(cfg.study.report)]
    if not report.runs_stages:  # a view over results already computed
        if stages:
            raise ConfigError(f"study.stages: the {cfg.study.report} report runs no stages; "
                              "declare none")
        return []
    specs = read_stages(stages or {}, checkpoint_selection)
    report.check(cfg, specs)
    return specs


def experiment_choice() -> str | None:
    """The ``experiment=<name>`` this Hydra job was given, if any."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    chosen = HydraConfig.get().runtime.choices.get("experiment")
    return None if chosen in (None, "null") else str(chosen)


def study_dir(cfg: DictConfig) -> Path:
    from ssd.studies.reports import REPORTS

    if cfg.output_dir:
        return Path(cfg.output_dir)
    if not REPORTS[str(cfg.study.report)].runs_stages:  # a view: one per runs directory
        return Path(cfg.runs_dir) / "study" / str(cfg.study.name)
    who = experiment_choice() or str(cfg.model.name)
    values = {**config_values(cfg, IDENTITY_KEYS), "experiment": who}
    return Path("runs") / "study" / str(cfg.study.name) / who / stage_identity(
        "study", STUDY_FORMAT, values, {})


# -- the size a stage will be (from its composed config) ----------------------------------------
def _tokens(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def _problems(e: DictConfig) -> int | None:
    """Problems an evaluation covers when known without loading the set: its limit or the size
    of a named LiveCodeBench set."""
    if e.get("limit") is not None:
        return int(e.limit)
    if e.get("problem_set"):
        from ssd.evaluation import named_set_size

        return named_set_size(str(e.problem_set))
    return None


def _max_tokens(c: DictConfig) -> int | None:
    found = c.decoding.max_tokens
    return int(found) if found is not None else (
        int(c.engine.max_model_len) if c.engine.get("max_model_len") else None)


def estimate(script: str, c: DictConfig, copies: int) -> str:
    """At most how many tokens a stage samples or trains (``copies``: sweep values x
    checkpoints), from its composed config."""
    if script == "train":
        t = c.trainer
        return (f"<= {_tokens(t.max_steps * t.global_batch_size * t.max_seq_len)} tokens trained "
                f"({t.max_steps} steps x {t.global_batch_size} x {t.max_seq_len})")
    longest = _max_tokens(c)
    if script == "generate":
        prompts = c.data.get("limit")
        count = f"{prompts} prompts" if prompts is not None else "the whole pool"
        if prompts is None or longest is None:
            return f"{count} x {c.decoding.n} x max_tokens {longest}"
        return (f"<= {_tokens(prompts * c.decoding.n * longest)} tokens sampled ({count} x "
                f"{c.decoding.n} x {longest})")
    problems = _problems(c.eval)
    n = c.eval.n if c.eval.get("n") is not None else c.decoding.n
    if problems is None or longest is None:
        return f"{copies} run(s) x n {n} x max_tokens {longest} per problem"
    return (f"<= {_tokens(problems * n * longest * copies)} tokens sampled ({copies} run(s) x "
            f"{problems} problems x {n} x {longest})")


# -- planning and running -----------------------------------------------------------------------
class StudyRunner:
    """Plans every declared stage (``plan``), then makes them complete in order (``run``).

    A driver that runs a study inside its own command (demo.py) names itself (``driver``), gives
    the overrides every stage starts with (``wiring``; default: the model, the experiment and
    the logger of ``cfg``), the console label of each stage run (``label``), what to do after
    each (``on_stage``: its state file) and, where a sweep's values depend on what the stages
    above it made, those values when the stage runs (``sweep_values``: the lab's temperatures
    include each trained model's planned best; the plan shows the declared ones)."""

    def __init__(self, cfg: DictConfig, specs: list[StageSpec], job: str, *,
                 driver: str = "study", wiring: list[str] | None = None,
                 label: Callable[[StageRun], str] | None = None,
                 on_stage: Callable[[StageRun], None] | None = None,
                 sweep_values: Callable[[StageSpec, StudyRunner], Sequence[Any]] | None = None
                 ) -> None:
        self.cfg, self.specs, self.job, self.driver = cfg, specs, job, driver
        lock = cfg.get("lock")
        self.lock = LockSettings() if lock is None else LockSettings(
            float(lock.stale_after_s), float(lock.heartbeat_s), float(lock.poll_s))
        self.wiring = ([*driver_model_overrides(cfg), *forwarded_choices(cfg)]
                       if wiring is None else wiring)
        self.scale = cfg.get("scale")
        self.label = label or (lambda run: f"[{cfg.study.name}]")
        self.on_stage = on_stage or (lambda run: None)
        self.sweep_values = sweep_values
        self.generated: dict[str, tuple[list[str], Path]] = {}   # name -> overrides, train set
        self.trained: dict[str, StageRun] = {}                   # name -> train stage run
        self.evaluated: dict[str, list[StageRun]] = {}           # name -> its runs (a model's)

    def overrides(self, spec: StageSpec, fed: list[str]) -> list[str]:
        """Wiring, what feeds the stage, the study's overrides, the scale's for its script."""
        scale = [] if self.scale is None else list(self.scale[spec.script])
        return [*self.wiring, *fed, *spec.overrides, *scale]

    def _ensure(self, run: StageRun) -> StageRun:
        ensure(run, self.label(run), self.driver, self.lock, self.job)
        self.on_stage(run)
        return run

    def step(self, spec: StageSpec, execute: bool) -> Step:
        """The stage runs of ``spec`` (computed when ``execute``), or why it must wait."""
        if execute and spec.sweep is not None and self.sweep_values is not None:
            spec = replace(spec, sweep=(spec.sweep[0], tuple(self.sweep_values(spec, self))))
        return {"generate": self._generate, "train": self._train,
                "evaluate": self._evaluate}[spec.script](spec, execute)

    def _generate(self, spec: StageSpec, execute: bool) -> Step:
        overrides = self.overrides(spec, [])
        sampling, train_set = generate_stages(overrides)
        self.generated[spec.name] = (overrides, train_set)
        step = Step(spec, estimate=estimate("generate", compose_stage("generate", overrides), 1))
        if execute:
            step.runs = [self._ensure(sampling), self._ensure(filter_stage(overrides))]
        else:
            step.runs = [sampling] + ([filter_stage(overrides)] if sampling.complete() else [])
        return step

    def _train(self, spec: StageSpec, execute: bool) -> Step:
        _, train_set = self.generated[str(spec.samples)]
        overrides = self.overrides(spec, [f"data.samples={override_value(str(train_set))}"])
        check_train(overrides)
        step = Step(spec, estimate=estimate("train", compose_stage("train", overrides), 1))
        if not execute and not train_set.exists():
            step.waiting = f"after {spec.samples} (its training set)"
            return step
        run = train_stage(overrides)
        step.runs = [self._ensure(run) if execute else run]
        self.trained[spec.name] = run
        return step

    def _one_evaluation(self, spec: StageSpec, fed: list[str], name: str) -> StageRun:
        overrides = self.overrides(spec, fed)
        fields = {"role": spec.role, "benchmark": spec.labels.get("benchmark")}
        if spec.sweep is None:
            return evaluate_stage(name, overrides, **fields)
        key, values = spec.sweep
        return sweep_stage(name, overrides, key, values, **fields)

    def _evaluate(self, spec: StageSpec, execute: bool) -> Step:
        copies = len(spec.sweep[1]) if spec.sweep else 1
        if spec.model is None:
            run = self._one_evaluation(spec, [], spec.name)
            step = Step(spec, estimate=estimate("evaluate", compose_stage(
                "evaluate", self.overrides(spec, [])), copies))
            step.runs = [self._ensure(run) if execute else run]
            return step
        # checked with the base model in the checkpoint's place (the same keys, nothing loaded)
        self._one_evaluation(spec, [], spec.name)
        training = self.trained.get(str(spec.model))
        step = Step(spec)
        if training is None or not training.complete():
            step.waiting = f"after {spec.model} (its checkpoints: {spec.checkpoints})"
            step.estimate = estimate("evaluate", compose_stage(
                "evaluate", self.overrides(spec, [])), copies) + " per checkpoint"
            return step
        trained = training.plan.run_dir
        last_step = int(training.record()["config"]["trainer"]["max_steps"])
        if spec.checkpoints.startswith(BEST_OF):
            scored = self.evaluated.get(spec.checkpoints.removeprefix(BEST_OF), [])
            if not scored or not all(run.complete() for run in scored):
                step.waiting = f"after {spec.checkpoints.removeprefix(BEST_OF)} (it picks the " \
                               "checkpoint)"
                return step
            chosen = [best_checkpoint(scored)]
        else:
            chosen = select_checkpoints(exports(trained), spec.checkpoints)
        step.estimate = estimate("evaluate", compose_stage("evaluate", self.overrides(spec, [])),
                                 copies * len(chosen))
        for checkpoint in chosen:
            fed = [f"model.path={override_value(str(trained / 'hf' / checkpoint))}"]
            # one checkpoint (last) keeps the stage's name; several are told apart
            name = spec.name if spec.checkpoints == "last" else f"{spec.name} {checkpoint}"
            run = self._one_evaluation(spec, fed, name)
            run.extra.update({"checkpoint": checkpoint,
                              "step": checkpoint_step(checkpoint) or last_step})
            step.runs.append(self._ensure(run) if execute else run)
        self.evaluated[spec.name] = step.runs
        return step

    def plan(self) -> list[Step]:
        """Every stage as far as it can be planned now (nothing runs)."""
        return [self.step(spec, execute=False) for spec in self.specs]

    def run(self) -> list[Step]:
        return [self.step(spec, execute=True) for spec in self.specs]


def best_checkpoint(scored: list[StageRun]) -> str:
    """The checkpoint whose evaluation has the highest pass@1 (the later one on a tie: more
    training for the same score)."""
    best = max(scored, key=lambda run: (float(run.record()["pass@1"]), run.extra["step"]))
    return str(best.extra["checkpoint"])


def state(run: StageRun) -> str:
    return "complete, reused" if run.complete() else "to compute"


def plan_lines(steps: list[Step]) -> list[str]:
    """The plan as a person reads it: one line per stage run (or waiting stage)."""
    lines = []
    for step in steps:
        if step.waiting:
            lines.append(f"  {step.spec.name}: {step.waiting}; {step.estimate}")
        for run in step.runs:
            sweep = f" ({len(run.also) + 1} jobs, one engine)" if run.also else ""
            lines.append(f"  {run.name}: {state(run)}{sweep} -> {run.run_dir}")
        if step.runs and step.estimate:
            lines.append(f"      {step.estimate}")
    return lines


def write_state(out: Path, cfg: DictConfig, steps: list[Step]) -> dict[str, Any]:
    payload = {"format": STUDY_FORMAT, "study": str(cfg.study.name),
               "report": str(cfg.study.report), "experiment": experiment_choice(),
               "model": str(cfg.model.name), "model_path": str(cfg.model.path),
               "stages": [step.summary() for step in steps],
               "config": OmegaConf.to_container(cfg, resolve=True)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STUDY_FILE, payload)
    return payload


def run_study(cfg: DictConfig) -> Path | None:
    """Check, print the plan, and (unless ``dry_run``) run every stage and write the report."""
    from ssd.studies.reports import REPORTS

    specs = study_specs(cfg)
    out = study_dir(cfg)
    runner = StudyRunner(cfg, specs, job=str(out))
    steps = runner.plan()
    runs = sum(len(s.runs) for s in steps)
    done = sum(r.complete() for s in steps for r in s.runs)
    waiting = sum(bool(s.waiting) for s in steps)
    who = experiment_choice() or cfg.model.name
    print(f"study {cfg.study.name} ({who}): {len(specs)} stages; {done} of {runs} planned runs "
          f"complete, {waiting} stage(s) planned once their inputs exist -> {out}", flush=True)
    for line in plan_lines(steps):
        print(line, flush=True)
    if cfg.dry_run:
        return None
    steps = runner.run()
    payload = write_state(out, cfg, steps)
    written = REPORTS[str(cfg.study.report)].write(cfg, payload, out)
    computed = sum(bool(r.computed) for s in steps for r in s.runs)
    print(f"study {cfg.study.name}: done ({computed} stage runs computed, the rest reused); "
          f"report: {written}", flush=True)
    return out
