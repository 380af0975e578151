"""The demo: the whole SSD chain on one small model, each stage its real script in a subprocess.

    generate.py  -> samples.jsonl, then the filter -> filter-<settings>/train.jsonl
    train.py     -> checkpoints/, csv/metrics.csv, hf/final
    evaluate.py  -> metrics.json, results.jsonl   (base model at its baseline decoding and the SSD
                                                   model at T_eval, per benchmark)
    report.md, loss.png, stages.json              (runs/demo/<model>/scale<s>-<hash>/)

Each stage is run through ``stages.ensure``: reused when its run directory is complete, computed
under a lock otherwise, resumed from its run directory after a kill (``stages.py`` says how and
why). The driver composes each stage's config with Hydra's compose API from the same overrides
the subprocess gets, so it never parses their output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ssd.bootstrap import comparison_table
from ssd.config import is_int, is_number, require, stats_options
from ssd.identity import config_values, stage_identity
from ssd.pipeline.lab import check_lab, lab_headline, run_lab
from ssd.pipeline.report import (
    DemoRecords,
    load_records,
    paired_comparisons,
    pass_header,
    pass_rows,
    stamp_rows,
    write_report,
)
from ssd.pipeline.stages import (
    CONF_DIR,
    StageRun,
    check_model_preset,
    checkpoint_selection,
    driver_model_overrides,
    presets,
    string_list,
)
from ssd.studies import StudyRunner, read_stages

# What decides the demo's outputs (its directory name); not demo.estimate, which only informs.
IDENTITY_KEYS = ["model", "lab", "demo.part", "demo.scale", "demo.generate", "demo.train",
                 "demo.evaluate", "demo.engine", "demo.logger", "demo.extra"]
PARTS = ("all", "lab", "chain")
STATE_FILE = "stages.json"
REPORT_FILE = "report.md"
LOSS_PNG = "loss.png"


@dataclass(frozen=True)
class Sizes:
    """The demo's sizes after ``demo.scale``: what the stage overrides are made of."""

    prompts: int
    steps: int
    problems: int
    warmup_steps: int
    save_every_n_steps: int


# -- validation and sizes (pure) ----------------------------------------------------------------
def check_demo(cfg: DictConfig) -> None:
    """One-line errors naming the key, before anything starts."""
    require(cfg, "demo.part", lambda v: v in PARTS,
            "one of " + ", ".join(PARTS) + " (the lab, the real-model chain, or both)")
    check_model_preset(cfg)
    stats_options(cfg)
    require(cfg, "demo.scale", lambda v: is_number(v) and v > 0,
            "> 0 (multiplies prompts, steps and problems)")
    pools = presets("data")
    require(cfg, "demo.generate.data", lambda v: v in pools and v != "sft",
            "a conf/data prompt pool: " + ", ".join(p for p in pools if p != "sft"))
    for key in ("demo.generate.prompts", "demo.generate.max_tokens", "demo.train.steps",
                "demo.train.global_batch_size", "demo.train.checkpoints",
                "demo.evaluate.problems", "demo.evaluate.n", "demo.evaluate.max_tokens"):
        require(cfg, key, lambda v: is_int(v) and v >= 1, "an integer >= 1")
    require(cfg, "demo.train.max_seq_len", lambda v: is_int(v) and v >= 16, "an integer >= 16")
    require(cfg, "demo.train.warmup_fraction", lambda v: is_number(v) and 0 <= v < 1, "in [0, 1)")
    require(cfg, "demo.train.activation_checkpointing", lambda v: isinstance(v, bool),
            "true or false")
    benches = presets("eval")
    require(cfg, "demo.evaluate.benchmarks",
            lambda v: len(v) >= 1 and len(set(v)) == len(v) and all(b in benches for b in v),
            "a non-empty list of distinct conf/eval presets: " + ", ".join(benches))
    require(cfg, "demo.engine.max_model_len", lambda v: v is None or (is_int(v) and v >= 16),
            "an integer >= 16, or null for the model's own")
    require(cfg, "demo.engine.enforce_eager", lambda v: isinstance(v, bool), "true or false")
    loggers = presets("logger")
    require(cfg, "demo.logger", lambda v: v in loggers, "one of " + ", ".join(loggers))
    for stage in ("generate", "train", "evaluate"):
        require(cfg, f"demo.extra.{stage}", string_list,
                "a list of Hydra overrides, e.g. '[engine.max_num_seqs=8]'")
    for key in ("stage_start_s", "generate_tokens_s", "train_tokens_s", "evaluate_tokens_s",
                "prompt_tokens"):
        require(cfg, f"demo.estimate.{key}", lambda v: is_number(v) and v > 0, "> 0")
    require(cfg, "demo.estimate.fill", lambda v: is_number(v) and 0 < v <= 1, "in (0, 1]")
    if cfg.demo.part != "chain":
        check_lab(lab_config(cfg))


def sizes(cfg: DictConfig) -> Sizes:
    """``demo.sizes``: what ``demo.scale`` makes of the sizes (conf/demo.yaml derives them)."""
    z = cfg.demo.sizes
    return Sizes(prompts=int(z.prompts), steps=int(z.steps), problems=int(z.problems),
                 warmup_steps=int(z.warmup_steps), save_every_n_steps=int(z.save_every_n_steps))


# -- the chain: conf/study/demo.yaml through the study runner -----------------------------------
def chain(cfg: DictConfig, job: str = "demo", label: Callable[[StageRun], str] | None = None,
          on_stage: Callable[[StageRun], None] | None = None) -> StudyRunner:
    """The demo's declared stages (``study.stages``: their overrides read the demo's keys), each
    given the demo's model first."""
    stages = OmegaConf.to_container(cfg.study.stages, resolve=True)
    return StudyRunner(cfg, read_stages(stages, checkpoint_selection), job, driver="demo",
                       wiring=driver_model_overrides(cfg), label=label, on_stage=on_stage)


def estimate_seconds(cfg: DictConfig) -> dict[str, float]:
    """A from-scratch time estimate per stage at the rates under ``demo.estimate``."""
    d, r, s = cfg.demo, cfg.demo.estimate, sizes(cfg)
    sampled = s.prompts * d.generate.max_tokens * r.fill
    sequence = min(d.train.max_seq_len, r.prompt_tokens + d.generate.max_tokens * r.fill)
    trained = s.steps * d.train.global_batch_size * sequence
    per_eval = s.problems * d.evaluate.n * d.evaluate.max_tokens * r.fill / r.evaluate_tokens_s
    runs = 2 * len(d.evaluate.benchmarks)
    return {
        "generate": r.stage_start_s + sampled / r.generate_tokens_s,
        "train": r.stage_start_s + trained / r.train_tokens_s,
        "evaluate": runs * (r.stage_start_s + per_eval),
    }


def demo_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    identity = stage_identity("demo", 1, config_values(cfg, IDENTITY_KEYS), {})
    return Path("runs") / "demo" / str(cfg.model.name) / f"scale{cfg.demo.scale:g}-{identity}"


# -- running ------------------------------------------------------------------------------------
def _write_state(out: Path, cfg: DictConfig, stages: list[StageRun], estimate: dict[str, float],
                 started: float) -> None:
    from ssd.records import write_json_atomic

    write_json_atomic(out / STATE_FILE, {
        "demo_dir": str(out),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "sizes": asdict(sizes(cfg)),
        "estimate_s": {k: round(v, 1) for k, v in estimate.items()},
        "stages": [s.summary() for s in stages],
        "wall_s": round(time.perf_counter() - started, 3),
    })


def log_report(cfg: DictConfig, out: Path, records: DemoRecords) -> None:
    """The report's tables in one W&B run in the demo directory (with demo.logger=wandb; the
    stages log their own runs): each evaluation's pass@k; per benchmark, the paired bootstrap of
    SSD against base (``demo/<benchmark>/ssd_minus_base/pass@<k>`` with ``/low``, ``/high`` and
    ``/p``, and its table); the base-vs-SSD table; each evaluation's problem set and grader."""
    from ssd.stamps import COLUMNS
    from ssd.tracking import log_wandb

    logger = OmegaConf.load(CONF_DIR / "logger" / f"{cfg.demo.logger}.yaml")
    if logger.wandb is None:
        return
    metrics = {f"demo/{e.role}/{e.benchmark}/pass@{k}": float(e.metrics["overall"][f"pass@{k}"])
               for e in records.evaluations for k in e.metrics.get("ks", [])}
    tables = {"demo/base_vs_ssd": (pass_header(records.evaluations),
                                   pass_rows(records.evaluations)),
              "demo/evaluations": (["benchmark", "model", *COLUMNS],
                                   stamp_rows(records.evaluations))}
    for benchmark, comparison in paired_comparisons(records).items():
        for k, d in comparison.scopes["overall"].items():
            prefix = f"demo/{benchmark}/ssd_minus_base/pass@{k}"
            metrics.update({prefix: d.difference.estimate, f"{prefix}/low": d.difference.low,
                            f"{prefix}/high": d.difference.high, f"{prefix}/p": d.p_value})
        tables[f"demo/{benchmark}/comparison"] = comparison_table(comparison)
    attached = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    attached.logger = logger  # the W&B run's config: the demo's, plus its logger
    log_wandb(attached, out, stage="demo", run_id=f"demo-{out.name}", metrics=metrics,
              tables=tables)


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def lab_config(cfg: DictConfig) -> DictConfig:
    """The lab's config inside the demo: the demo's ``lab`` group and logger, no ablations, and
    lab.py's own LoRA default (none)."""
    logger = OmegaConf.load(CONF_DIR / "logger" / f"{cfg.demo.logger}.yaml")
    return OmegaConf.create({"lab": OmegaConf.to_container(cfg.lab, resolve=True),
                             "ablate": False, "output_dir": None,
                             "lora": OmegaConf.load(CONF_DIR / "lab.yaml").lora,
                             "logger": OmegaConf.to_container(logger)})


def run_lab_part(cfg: DictConfig, out: Path) -> Path:
    """``demo.part=lab``: the lab alone; the demo report is its headline."""
    print("demo: the SSD lab (a world with a known answer; lab.py)", flush=True)
    lead = lab_headline(run_lab(lab_config(cfg)))
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(lead)
    print(f"demo: report in {out / REPORT_FILE}")
    return out


def run_demo(cfg: DictConfig) -> Path:
    """The lab, then the whole chain (``demo.part``); returns the demo directory (report.md)."""

    check_demo(cfg)
    started = time.perf_counter()
    out = demo_dir(cfg)
    if cfg.demo.part == "lab":
        return run_lab_part(cfg, out)
    benchmarks = list(cfg.demo.evaluate.benchmarks)
    total = 3 + 2 * len(benchmarks)
    estimate = estimate_seconds(cfg)
    s = sizes(cfg)
    print(f"demo: model={cfg.model.name}, scale {cfg.demo.scale:g}: {s.prompts} prompts, {s.steps} "
          f"training steps of {cfg.demo.train.global_batch_size} sequences, {s.problems} "
          f"problems x {cfg.demo.evaluate.n} samples on {', '.join(benchmarks)} (base and SSD) "
          f"-> {out}")
    print("demo: estimated from scratch at the rates in conf/demo.yaml (SmolLM2-135M, 2 CPU "
          "cores): " + ", ".join(f"{k} ~{format_duration(v)}" for k, v in estimate.items())
          + f"; total ~{format_duration(sum(estimate.values()))}. Finished stages are reused.",
          flush=True)

    # Every config is checked (benchmark files present, training values) before anything runs,
    # so bad input fails now, not in minutes. A stage whose inputs are another stage's outputs is
    # planned once they exist: its identity is their content.
    stages: list[StageRun] = []

    def done(stage: StageRun) -> None:
        stages.append(stage)
        _write_state(out, cfg, stages, estimate, started)

    runner = chain(cfg, job=f"demo {out}", label=lambda _: f"[{len(stages) + 1}/{total}]",
                   on_stage=done)
    runner.plan()
    lead = ""
    if cfg.demo.part == "all":  # the chain's values are checked above, before the lab's minutes
        print("demo: part 1, the SSD lab (a world with a known answer; lab.py)", flush=True)
        lead = lab_headline(run_lab(lab_config(cfg)))
        print("demo: part 2, the real-model chain", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    runner.run()

    records = load_records(stages, out, model=str(cfg.model.name), scale=float(cfg.demo.scale))
    records.stats = stats_options(cfg)
    report = write_report(records, out, REPORT_FILE, LOSS_PNG, lead)
    log_report(cfg, out, records)
    _write_state(out, cfg, stages, estimate, started)
    wall = time.perf_counter() - started
    print("\ndemo: stage wall times: " + ", ".join(
        f"{st.name} {format_duration(st.wall_s) if st.computed else 'reused'}" for st in stages)
        + f"; total {format_duration(wall)}")
    for evaluation in records.evaluations:
        if evaluation.role == "ssd":
            base = next(e for e in records.evaluations
                        if e.role == "base" and e.benchmark == evaluation.benchmark)
            print(f"demo: {evaluation.benchmark}: " + ", ".join(
                f"pass@{k} base {base.metrics[f'pass@{k}']:.3f} -> SSD "
                f"{evaluation.metrics[f'pass@{k}']:.3f}" for k in base.metrics["ks"]
                if f"pass@{k}" in evaluation.metrics))
    print(f"demo: report in {report}")
    return out

