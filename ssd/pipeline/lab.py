"""The SSD lab: a world whose answer is known, put through the real generate -> train -> evaluate.

    fitted base (ssd.lab.base, cached)      a small transformer distilled onto the world's teacher
    generate.py -> filter                   N samples at the world's T_train and truncation
    train.py                                SFT on exactly those tokens
    evaluate.py -m (base, then SSD)         sampled pass rates on a T_eval grid, and each model's
                                            exact success probability read off vLLM
    report.md, lab.json, lab_curves.png     runs/lab/<world>-<hash>/

With ``lora.ranks=[r, ...]`` SSD is also trained through a rank-r LoRA adapter per rank (the same
samples, the same schedule) and evaluated at its own best T against the same base: the report
sets each rank's gain beside full fine-tuning's.

Three numbers sit side by side at every point: the *analytic* value for the paper's teacher and
its ideal SSD student (``ssd.analysis.toy`` on the world's own distributions), the *exact* value
for the learned models (their next-token distributions along the success paths, read off vLLM,
multiplied out under the evaluation decoding), and the *sampled* pass rate with its standard
error. The gain is SSD's best minus the base's best: sampled at each model's own best
temperature (planned from its exact curve), with a 95% interval from the binomial variances of
the two independent sample sets.

The stages are declared (conf/study/lab.yaml, reading ``lab_run``: ``chain_values``) and run by
the study runner, each keyed by its content, so a rerun reuses everything and a changed value
recomputes only what it changes (an ablation reuses the base and its evaluation). An evaluation
sweep's temperatures are given when the runner reaches it: the models must be trained first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ssd.analysis import (
    PAPER_T_RANGE,
    T_RANGE,
    VLLM_MAX_T,
    ToyModel,
    answer_text,
    binomial_se,
    fit_errors,
    gain_interval,
    learned_model,
    optimum_record,
    planned_temperature,
    question_id,
    rows_from_record,
    sharpening,
    ssd_student,
    success_curve,
    world_teacher,
)
from ssd.config import ConfigError, is_int, is_number, require
from ssd.identity import stage_identity
from ssd.lab.base import (
    FitSettings,
    fitted_base,
    success_state_rows,
)
from ssd.lab.world import World, WorldError, build_world
from ssd.pipeline.stages import CONF_DIR, StageRun, checkpoint_selection
from ssd.plotting import pyplot, save_figure
from ssd.records import write_json_atomic
from ssd.studies import StageSpec, StudyRunner, read_stages
from ssd.templates import pct, pp, render, signed

LAB_FORMAT = 1
REPORT_FILE = "report.md"
RESULT_FILE = "lab.json"
FIGURE_FILE = "lab_curves.png"
SSD_KEYS = ("samples", "t_train", "top_k", "top_p", "seed")
LAB_STUDY = CONF_DIR / "study" / "lab.yaml"   # the stages, declared


# -- validation ---------------------------------------------------------------------------------
def _positive_int(cfg: DictConfig, key: str) -> None:
    require(cfg, key, lambda v: is_int(v) and v >= 1, "an integer >= 1")


def _check_ssd(cfg: DictConfig, prefix: str) -> None:
    _positive_int(cfg, f"{prefix}.samples")
    require(cfg, f"{prefix}.t_train", lambda v: is_number(v) and 0 < v <= VLLM_MAX_T,
            f"in (0, {VLLM_MAX_T}] (vLLM's largest temperature)")
    require(cfg, f"{prefix}.top_k", lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: off)")
    require(cfg, f"{prefix}.top_p", lambda v: is_number(v) and 0 < v <= 1,
            "in (0, 1] (1.0: off)")
    require(cfg, f"{prefix}.seed", is_int, "an integer")


def check_lab(cfg: DictConfig) -> World:
    """The world and every lab value, each bad one as one line naming its key."""
    try:
        world = build_world(OmegaConf.to_container(cfg.lab.world, resolve=True), "lab.world")
    except WorldError as error:
        raise ConfigError(str(error)) from None
    for key in ("hidden_size", "layers", "steps", "batch"):
        _positive_int(cfg, f"lab.base.{key}")
    require(cfg, "lab.base.hidden_size", lambda v: v % 32 == 0,
            "a multiple of 32 (vLLM's CPU attention takes heads of 32)")
    require(cfg, "lab.base.lr", lambda v: is_number(v) and v > 0, "> 0")
    _check_ssd(cfg, "lab.ssd")
    for key in ("steps", "global_batch_size"):
        _positive_int(cfg, f"lab.train.{key}")
    require(cfg, "lab.train.warmup_steps", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    for key in ("lr", "min_lr"):
        require(cfg, f"lab.train.{key}", lambda v: is_number(v) and v > 0, "> 0")
    require(cfg, "lab.eval.top_p", lambda v: is_number(v) and 0 < v <= 1, "in (0, 1] (1.0: off)")
    require(cfg, "lab.eval.top_k", lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: off)")
    require(cfg, "lab.eval.n", lambda v: is_int(v) and v >= 5, "an integer >= 5 (pass@5)")
    require(cfg, "lab.eval.seed", is_int, "an integer")
    require(cfg, "lab.eval.temperatures",
            lambda v: len(v) >= 1 and all(is_number(t) and 0 < t <= VLLM_MAX_T for t in v),
            f"a non-empty list of temperatures in (0, {VLLM_MAX_T}] (vLLM's largest)")
    for i, ablation in enumerate(cfg.lab.ablations or []):
        require(cfg, f"lab.ablations[{i}].name", lambda v: isinstance(v, str) and v != "",
                "a non-empty name")
        unknown = set(ablation.get("ssd") or {}) - set(SSD_KEYS)
        if unknown:
            raise ConfigError(f"lab.ablations[{i}].ssd: unknown key {sorted(unknown)[0]}; "
                              f"one of {', '.join(SSD_KEYS)}")
        # the ablation's SSD values are the lab's with its own on top: checked as they will run
        ssd = OmegaConf.merge(cfg.lab.ssd, ablation.get("ssd") or {})
        _check_ssd(OmegaConf.create({"lab": {"ablations": [{}] * i + [{"ssd": ssd}]}}),
                   f"lab.ablations.{i}.ssd")
    require(cfg, "ablate", lambda v: isinstance(v, bool), "true or false")
    require(cfg, "lora.ranks", lambda v: all(is_int(r) and r >= 1 for r in v)
            and len(set(v)) == len(v), "a list of distinct integers >= 1, e.g. [2,8] ([]: none)")
    require(cfg, "lora.lr", lambda v: v is None or (is_number(v) and v > 0),
            "> 0, or null for lab.train.lr")
    return world


# -- the world's files and the stages' overrides -----------------------------------------------
@dataclass(frozen=True)
class LabFiles:
    root: Path
    pool: Path
    benchmark: Path


def write_world_files(world: World, root: Path) -> LabFiles:
    """The prompt pool and the benchmark of the world (their content is the world's)."""
    root.mkdir(parents=True, exist_ok=True)
    pool = root / "pool.json"
    pool_text = json.dumps([{"problem": p.text} for p in world.prompts]) + "\n"
    bench = root / "benchmark.jsonl"
    bench_text = "".join(json.dumps({
        "question_id": question_id(world, p), "prompt": world.prompts[p].text,
        "answers": [answer_text(path) for path in world.success_paths(p)]}) + "\n"
        for p in range(len(world.prompts)))
    for path, text in ((pool, pool_text), (bench, bench_text)):
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return LabFiles(root, pool, bench)


def chain_values(world: World, files: LabFiles, base: Path, logger: str,
                 ssd: Mapping[str, Any], train: Mapping[str, Any],
                 evaluation: Mapping[str, Any], name: str = "ssd", with_base: bool = True
                 ) -> dict[str, Any]:
    """``lab_run``: what the declared stages (conf/study/lab.yaml) read for one SSD chain, typed
    as the stages take them (a value written 1 and one written 1.0 are the same run). ``train``
    with a ``lora_rank`` trains an adapter of that rank (train.py's other LoRA values as they
    default); ``name`` names the SSD model's evaluation; ``with_base``: the base model's too."""
    return {
        "world": world.name, "max_tokens": world.depth + 1, "pool": str(files.pool),
        "benchmark": str(files.benchmark), "base": str(base), "logger": logger,
        "ssd": {"samples": int(ssd["samples"]), "t_train": float(ssd["t_train"]),
                "top_k": int(ssd["top_k"]), "top_p": float(ssd["top_p"]),
                "seed": int(ssd["seed"])},
        "train": {"steps": int(train["steps"]),
                  "global_batch_size": int(train["global_batch_size"]),
                  "lr": float(train["lr"]), "min_lr": float(train["min_lr"]),
                  "warmup_steps": int(train["warmup_steps"])},
        "lora": [{"lora.rank": int(train["lora_rank"])}] if "lora_rank" in train else [],
        "eval": {"n": int(evaluation["n"]), "seed": int(evaluation["seed"]),
                 "top_k": int(evaluation["top_k"]), "top_p": float(evaluation["top_p"]),
                 "temperatures": [float(t) for t in evaluation["temperatures"]]},
        "ssd_name": name, "with_base": with_base}


def chain_runner(values: Mapping[str, Any], job: str, label: str = "ssd",
                 temperatures: Callable[[StageSpec, StudyRunner], Sequence[float]] | None = None
                 ) -> StudyRunner:
    """The lab's declared stages (conf/study/lab.yaml) for one chain's ``lab_run`` values, with
    the study runner that makes them complete (``temperatures``: each sweep's, when it runs)."""
    root = OmegaConf.create({"study": OmegaConf.load(LAB_STUDY), "lab_run": dict(values)})
    stages = OmegaConf.to_container(root.study.stages, resolve=True)
    assert isinstance(stages, dict)
    return StudyRunner(root, read_stages(stages, checkpoint_selection), job, driver="lab",
                       wiring=[], sweep_values=temperatures,
                       label=lambda run: "base" if run.name == "evaluate base" else label)


def lora_train_values(train: Mapping[str, Any], lora: Mapping[str, Any], rank: int
                      ) -> dict[str, Any]:
    """The lab's training values for a rank-``rank`` adapter: full fine-tuning's schedule, at
    ``lora.lr`` if set."""
    return {**train, "lora_rank": rank, "lr": train["lr"] if lora["lr"] is None else lora["lr"]}


# -- running ------------------------------------------------------------------------------------
@dataclass
class Evaluated:
    """One model's evaluation sweep: per T the sampled and exact pass@1 (and its sample count)."""

    name: str
    points: dict[float, dict[str, float]] = field(default_factory=dict)
    rows: dict[tuple[int, tuple[int, ...]], list[float]] = field(default_factory=dict)
    vocab: list[str] = field(default_factory=list)
    stage: StageRun | None = None


def evaluated(name: str, world: World, stage: StageRun, temperatures: Sequence[float]
              ) -> Evaluated:
    result = Evaluated(name, stage=stage)
    for t, plan in zip(temperatures, [stage.plan, *stage.also], strict=True):
        record = plan.record()
        assert record is not None
        samples = int(record["samples"])
        result.points[t] = {"sampled": float(record["pass@1"]), "samples": samples,
                            "exact": float(record["exact"]["pass@1"]),
                            "pass@5": float(record.get("pass@5", float("nan")))}
        if not result.rows:
            result.rows, result.vocab = rows_from_record(world, record)
    return result


@dataclass
class LabContext:
    world: World
    files: LabFiles
    base_dir: Path
    logger: str
    evaluation: Mapping[str, Any]   # lab.eval
    job: str


@dataclass
class Chain:
    """One SSD chain made complete: its stage runs, its evaluations and each model's planned
    best T (the base's only when the chain evaluates it)."""

    stages: list[StageRun]
    training: StageRun
    ssd: Evaluated
    base: Evaluated | None
    best: dict[str, float]


def run_chain(ctx: LabContext, ssd: Mapping[str, Any], train: Mapping[str, Any], label: str,
              name: str = "ssd", with_base: bool = True) -> Chain:
    """generate -> filter -> train for one set of SSD and training values, then the evaluation
    sweeps: with the base, both models at the lab's temperatures and both planned bests (one
    grid, so the two are compared at the same points); without, the SSD model at its own best."""
    top_p = float(ctx.evaluation["top_p"])
    best: dict[str, float] = {}

    def temperatures(spec: StageSpec, runner: StudyRunner) -> list[float]:
        if not best:
            if with_base:
                best["base"] = planned_best(ctx.world, ctx.base_dir, top_p)
            export = Path(runner.trained["train"].run_dir) / "hf" / "final"
            best["ssd"] = planned_best(ctx.world, export, top_p)
        if not with_base:
            return [best["ssd"]]
        return sorted({float(t) for t in ctx.evaluation["temperatures"]} | set(best.values()))

    values = chain_values(ctx.world, ctx.files, ctx.base_dir, ctx.logger, ssd, train,
                          ctx.evaluation, name, with_base)
    runner = chain_runner(values, ctx.job, label, temperatures)
    steps = {step.spec.name: step for step in runner.run()}
    stages = [run for step in steps.values() for run in step.runs]

    def result(stage: str, model: str) -> Evaluated:
        step = steps[stage]
        return evaluated(model, ctx.world, step.runs[0], step.spec.sweep[1])

    return Chain(stages, steps["train"].runs[0], result("evaluate ssd", name),
                 result("evaluate base", "base") if with_base else None, best)


def planned_best(world: World, model_dir: Path, top_p: float) -> float:
    rows, vocab = success_state_rows(model_dir, world)
    return planned_temperature(learned_model("planning", world, rows, vocab), top_p)


def lab_identity(cfg: DictConfig) -> str:
    """The lab run directory's name: the lab group's values (the stages key themselves), and the
    LoRA values when ranks are set (a lab without them keeps its directory)."""
    values = OmegaConf.to_container(cfg.lab, resolve=True)
    assert isinstance(values, dict)
    identity: dict[str, Any] = {"lab": values, "ablate": cfg.ablate}
    if cfg.lora.ranks:
        identity["lora"] = OmegaConf.to_container(cfg.lora, resolve=True)
    return stage_identity("lab", LAB_FORMAT, identity, {})


def run_lab(cfg: DictConfig) -> Path:
    """The whole lab for ``cfg.lab`` (plus its ablations when ``cfg.ablate``); the report path."""
    import time

    started = time.perf_counter()
    world = check_lab(cfg)
    lab = OmegaConf.to_container(cfg.lab, resolve=True)
    assert isinstance(lab, dict)
    out = Path(cfg.output_dir) if cfg.output_dir else (
        Path("runs") / "lab" / f"{world.name}-{lab_identity(cfg)}")
    logger = "wandb" if cfg.logger.get("wandb") else "none"
    print(f"lab: world {world.name} ({len(world.prompts)} prompts, depth {world.depth}) -> {out}",
          flush=True)
    files = write_world_files(world, out)
    fit_started = time.perf_counter()
    base_dir = fitted_base(world, FitSettings(**lab["base"]))
    fit_s = time.perf_counter() - fit_started
    ctx = LabContext(world, files, base_dir, logger, lab["eval"], f"lab-{time.time():.0f}")

    main = run_chain(ctx, lab["ssd"], lab["train"], "ssd")
    assert main.base is not None
    base, ssd, best = main.base, main.ssd, main.best

    ablations = []
    if cfg.ablate:
        for entry in lab.get("ablations") or []:
            values = {**lab["ssd"], **(entry.get("ssd") or {})}
            chain = run_chain(ctx, values, lab["train"], f"ablation {entry['name']}",
                              f"ssd-{entry['name']}", with_base=False)
            ablations.append((entry["name"], values, chain.ssd, chain.best["ssd"], chain.stages))

    adapters = []
    lora = OmegaConf.to_container(cfg.lora, resolve=True)
    assert isinstance(lora, dict)
    for rank in lora["ranks"]:
        values = lora_train_values(lab["train"], lora, rank)
        chain = run_chain(ctx, lab["ssd"], values, f"lora rank {rank}", f"ssd-lora{rank}",
                          with_base=False)
        adapters.append(AdapterRun(rank, values, chain.ssd, chain.best["ssd"], chain.training,
                                   chain.ssd.stage))

    models = lab_models(world, lab, base, ssd)
    summary = summarise(world, lab, models, base, ssd, best, ablations)
    if adapters:
        summary["lora"] = lora_rows(world, float(lab["eval"]["top_p"]), summary, adapters)
    summary["timing"] = {
        "total_s": round(time.perf_counter() - started, 1), "base_fit_s": round(fit_s, 1),
        "stages": [{"stage": f"{label} {s.name}".strip(), "computed": s.computed,
                    "wall_s": s.wall_s}
                   for label, group in [("", main.stages),
                                        *((f"ablation {a[0]}", a[4]) for a in ablations),
                                        *((f"lora rank {a.rank}", [a.training, a.evaluation])
                                          for a in adapters)]
                   for s in group if s is not None]}
    figure = plot_curves(out / FIGURE_FILE, world, lab, models, base, ssd, summary,
                         [(f"SSD, LoRA rank {a.rank}, exact (vLLM)", a.model(world))
                          for a in adapters])
    if logger == "wandb":
        from ssd.tracking import log_wandb

        flat = {f"lab/{k}": v for k, v in summary["headline"].items() if isinstance(v, float)}
        columns = ["model", "t", "sampled", "exact", "se", "z"]
        summary["wandb"] = log_wandb(
            cfg, out, stage="lab", run_id=f"lab-{out.name}", metrics=flat,
            tables={"lab/points": (columns, [[p[c] for c in columns]
                                             for p in summary["points"]])})
    write_json_atomic(out / RESULT_FILE, summary)
    report = out / REPORT_FILE
    report.write_text(report_markdown(world, lab, summary, figure.name))
    head = summary["headline"]
    print(f"lab: gain {100 * head['gain']:+.2f} pp (95% CI {100 * head['gain_low']:+.2f} to "
          f"{100 * head['gain_high']:+.2f}); report {report}", flush=True)
    return report


# -- the summary (pure) -------------------------------------------------------------------------
def _sampled_at(result: Evaluated, t: float) -> dict[str, float]:
    point = result.points[t]
    return {"t": t, "p": point["sampled"], "se": binomial_se(point["sampled"], point["samples"]),
            "n": point["samples"], "exact": point["exact"]}


@dataclass(frozen=True)
class LabModels:
    """The four path-product models the summary and the figure are made of."""

    teacher: ToyModel  # the world's teacher (analytic)
    student: ToyModel  # its ideal SSD student (analytic)
    base: ToyModel     # the fitted base, rows read off vLLM
    ssd: ToyModel      # the SSD model, rows read off vLLM


def lab_models(world: World, lab: Mapping[str, Any], base: Evaluated, ssd: Evaluated
               ) -> LabModels:
    s = lab["ssd"]
    teacher = world_teacher(world)
    return LabModels(
        teacher, ssd_student(teacher, float(s["t_train"]), float(s["top_p"]), int(s["top_k"])),
        learned_model("base", world, base.rows, base.vocab),
        learned_model("ssd", world, ssd.rows, ssd.vocab))


def summarise(world: World, lab: Mapping[str, Any], models: LabModels, base: Evaluated,
              ssd: Evaluated, best: Mapping[str, float], ablations: Sequence[tuple[Any, ...]]
              ) -> dict[str, Any]:
    top_p = float(lab["eval"]["top_p"])
    teacher, student = models.teacher, models.student
    base_model, ssd_learned = models.base, models.ssd
    analytic = {"teacher": optimum_record(teacher, top_p),
                "student": optimum_record(student, top_p),
                "paper_teacher": optimum_record(teacher, top_p, PAPER_T_RANGE),
                "paper_student": optimum_record(student, top_p, PAPER_T_RANGE)}
    exact = {"base": optimum_record(base_model, top_p), "ssd": optimum_record(ssd_learned, top_p)}
    sampled = {"base": _sampled_at(base, best["base"]), "ssd": _sampled_at(ssd, best["ssd"])}
    gain = gain_interval(sampled["ssd"]["p"], sampled["ssd"]["n"], sampled["base"]["p"],
                         sampled["base"]["n"])
    points = []
    for name, result in (("base", base), ("ssd", ssd)):
        for t, point in sorted(result.points.items()):
            se = binomial_se(point["exact"], point["samples"])
            points.append({"model": name, "t": t, **point, "se": se,
                           "z": (point["sampled"] - point["exact"]) / se if se > 0 else 0.0})
    ablation_rows = []
    for name, values, result, t_best, _ in ablations:
        variant = ssd_student(teacher, float(values["t_train"]), float(values["top_p"]),
                              int(values["top_k"]))
        learned = learned_model(name, world, result.rows, result.vocab)
        at = _sampled_at(result, t_best)
        measured = gain_interval(at["p"], at["n"], sampled["base"]["p"], sampled["base"]["n"])
        ablation_rows.append({
            "name": name, "ssd": values,
            "analytic_gain": optimum_record(variant, top_p)["p"] - analytic["teacher"]["p"],
            "exact_gain": optimum_record(learned, top_p)["p"] - exact["base"]["p"],
            "sampled": at, **{f"sampled_{k}": v for k, v in measured.items()}})
    return {
        "world": world.name, "world_digest": world.digest(),
        "headline": {"gain": gain["gain"], "gain_low": gain["low"], "gain_high": gain["high"],
                     "gain_se": gain["se"],
                     "exact_gain": exact["ssd"]["p"] - exact["base"]["p"],
                     "analytic_gain": analytic["student"]["p"] - analytic["teacher"]["p"],
                     "base_best": sampled["base"]["p"], "ssd_best": sampled["ssd"]["p"]},
        "analytic": analytic, "exact": exact, "sampled": sampled, "points": points,
        "max_abs_z": max(abs(p["z"]) for p in points),
        "fit": fit_errors(world, base_model, sorted(base.rows), base.vocab),
        "sharpening": sharpening(world, lab, base_model, ssd_learned, sorted(base.rows),
                                 base.vocab),
        "ablations": ablation_rows,
    }


@dataclass(frozen=True)
class AdapterRun:
    """SSD through a LoRA adapter of one rank: its training values, its evaluation at its own
    best T, and its two stages (their times)."""

    rank: int
    train: Mapping[str, Any]
    result: Evaluated
    t_best: float
    training: StageRun
    evaluation: StageRun | None

    def model(self, world: World) -> ToyModel:
        return learned_model(f"lora{self.rank}", world, self.result.rows, self.result.vocab)


def lora_rows(world: World, top_p: float, summary: Mapping[str, Any],
              adapters: Sequence[AdapterRun]) -> list[dict[str, Any]]:
    """Each rank beside full fine-tuning: its exact optimum and gain, its sampled best with the
    gain's 95% interval against the same base sample, the share of full fine-tuning's gain it
    keeps (exact and sampled), its trainable parameters and its stages' time."""
    head, base_exact = summary["headline"], summary["exact"]["base"]
    base_at = summary["sampled"]["base"]
    rows = []
    for run in adapters:
        exact = optimum_record(run.model(world), top_p)
        at = _sampled_at(run.result, run.t_best)
        measured = gain_interval(at["p"], at["n"], base_at["p"], base_at["n"])
        exact_gain = exact["p"] - base_exact["p"]
        rows.append({
            "rank": run.rank, "lr": run.train["lr"],
            "trainable_parameters": (run.training.plan.record() or {}).get(
                "trainable_parameters"),
            "exact": exact, "exact_gain": exact_gain,
            "exact_kept": exact_gain / head["exact_gain"] if head["exact_gain"] else None,
            "sampled": at, **{f"sampled_{k}": v for k, v in measured.items()},
            "sampled_kept": measured["gain"] / head["gain"] if head["gain"] else None,
            "train_s": run.training.wall_s,
            "evaluate_s": run.evaluation.wall_s if run.evaluation is not None else None})
    return rows


# -- report -------------------------------------------------------------------------------------
def lab_headline(report: Path) -> str:
    """The demo report's opening: the lab's measured gain, from its lab.json."""
    summary = json.loads((report.parent / RESULT_FILE).read_text())
    return render("lab_headline.md.j2", s=summary, report=report)


def plot_curves(path: Path, world: World, lab: Mapping[str, Any], models: LabModels,
                base: Evaluated, ssd: Evaluated, summary: Mapping[str, Any],
                adapters: Sequence[tuple[str, ToyModel]] = ()) -> Path:
    """Figure 14 from a real pipeline: analytic teacher/student curves, the learned models' exact
    curves (LoRA adapters' too, if any), the sampled points with 2-SE bars."""
    plt = pyplot()
    top_p = float(lab["eval"]["top_p"])
    fig, ax = plt.subplots(figsize=(9, 5.5), constrained_layout=True)
    curves = ((models.teacher, "analytic teacher (paper)", "--", "tab:orange"),
              (models.student, "analytic SSD student (paper)", "--", "tab:blue"),
              (models.base, "fitted base, exact (vLLM)", "-", "tab:orange"),
              (models.ssd, "SSD model, exact (vLLM)", "-", "tab:blue"))
    for model, label, style, color in curves:
        temps, values = success_curve(model, top_p, (T_RANGE[0], 2.5))
        ax.plot(temps, 100 * values, style, color=color, label=label,
                alpha=0.6 if style == "--" else 1.0)
    for (label, model), color in zip(adapters, ("tab:green", "tab:purple", "tab:brown",
                                                "tab:olive", "tab:cyan"), strict=False):
        temps, values = success_curve(model, top_p, (T_RANGE[0], 2.5))
        ax.plot(temps, 100 * values, ":", color=color, label=label)
    for result, color in ((base, "tab:orange"), (ssd, "tab:blue")):
        ts = sorted(result.points)
        p = np.array([result.points[t]["sampled"] for t in ts])
        se = np.array([binomial_se(v, int(result.points[t]["samples"])) for t, v in zip(ts, p,
                                                                                       strict=True)])
        ax.errorbar(ts, 100 * p, yerr=200 * se, fmt="o", color=color, markersize=4, capsize=2,
                    label=f"{result.name}: sampled (±2 SE)")
    ax.axvline(VLLM_MAX_T, color="gray", linewidth=0.8, linestyle=":")
    ax.annotate("vLLM's largest T", (VLLM_MAX_T, 0), textcoords="offset points", xytext=(3, 3),
                fontsize=7, color="gray")
    head = summary["headline"]
    ax.set_title(f"lab world {world.name}: SSD gain {100 * head['gain']:+.2f} pp "
                 f"(95% CI {100 * head['gain_low']:+.2f} to {100 * head['gain_high']:+.2f})")
    ax.set_xlabel(f"evaluation temperature T (top-p {top_p:g})")
    ax.set_ylabel("success probability (%)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def _by_archetype(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["archetype"], []).append(row)
    return groups


def report_markdown(world: World, lab: Mapping[str, Any], summary: Mapping[str, Any],
                    figure: str) -> str:
    """report.md: ``ssd/templates/lab_report.md.j2`` with the tables built here."""
    a, e, sm = summary["analytic"], summary["exact"], summary["sampled"]
    tables = {
        "optima": (["model", "analytic best (T, P)", "learned, exact best (T, P)",
                    "sampled at its best (T, P ± SE)", "exact there"],
                   [[who, f"{a[paper]['t']:.4f}, {pct(a[paper]['p'])}",
                     f"{e[mine]['t']:.4f}, {pct(e[mine]['p'])} ({e[mine]['approach']})",
                     _sampled_cell(sm[mine]), pct(sm[mine]["exact"])]
                    for who, paper, mine in (("base", "teacher", "base"),
                                             ("SSD", "student", "ssd"))]),
        "points": (["model", "T", "sampled", "exact", "z"],
                   [[p["model"], f"{p['t']:.4g}", pct(p["sampled"]), pct(p["exact"]),
                     f"{p['z']:+.2f}"] for p in summary["points"]]),
        "sharpening": (["prompt", "position", "archetype", "success mass", "cut mass", "entropy"],
                       [[r["prompt"], r["position"], r["archetype"],
                         f"{r['base_success']:.3f} -> {r['ssd_success']:.3f}",
                         f"{r['base_cut']:.2e} -> {r['ssd_cut']:.2e}",
                         f"{r['base_entropy']:.3f} -> {r['ssd_entropy']:.3f}"]
                        for r in summary["sharpening"]]),
        "ablations": (["ablation", "T_train", "top-p", "analytic gain", "exact gain",
                       "sampled gain (95% CI)"],
                      [[r["name"], r["ssd"]["t_train"], r["ssd"]["top_p"], pp(r["analytic_gain"]),
                        pp(r["exact_gain"]), _sampled_gain_cell(r)] for r in summary["ablations"]])}
    archetypes = {kind: {key: float(np.mean([r[key] for r in rows]))
                         for key in ("base_success", "ssd_success", "base_entropy",
                                     "ssd_entropy")}
                  for kind, rows in _by_archetype(summary["sharpening"]).items()}
    return render("lab_report.md.j2", world=world.name, lab=lab, s=summary, tables=tables,
                  archetypes=archetypes, figure=figure, max_t=VLLM_MAX_T,
                  lora_table=lora_table(summary) if summary.get("lora") else None)


def _sampled_cell(at: Mapping[str, Any]) -> str:
    return f"{at['t']:.4f}, {pct(at['p'])} ± {100 * at['se']:.2f}"


def _interval_cell(gain: float, low: float, high: float, kept: str = "") -> str:
    """A gain with its 95% interval (and the share of full fine-tuning's it keeps)."""
    return f"{pp(gain)} ({signed(low)} to {signed(high)}{kept})"


def _sampled_gain_cell(row: Mapping[str, Any], kept: str = "") -> str:
    return _interval_cell(row["sampled_gain"], row["sampled_low"], row["sampled_high"], kept)


def _kept(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def lora_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The LoRA table: each rank beside full fine-tuning, against the same base."""
    head, e, sm = summary["headline"], summary["exact"], summary["sampled"]
    full = ["full", "all", f"{e['ssd']['t']:.4f}, {pct(e['ssd']['p'])}", pp(head["exact_gain"]),
            _sampled_cell(sm["ssd"]),
            _interval_cell(head["gain"], head["gain_low"], head["gain_high"]),
            "see below"]
    ranks = [[f"LoRA rank {r['rank']} (lr {r['lr']:g})",
              "-" if r["trainable_parameters"] is None else f"{r['trainable_parameters']:,}",
              f"{r['exact']['t']:.4f}, {pct(r['exact']['p'])}",
              f"{pp(r['exact_gain'])} ({_kept(r['exact_kept'])})", _sampled_cell(r["sampled"]),
              _sampled_gain_cell(r, f", {_kept(r['sampled_kept'])}"),
              f"{r['train_s'] or 0:.0f} s, {r['evaluate_s'] or 0:.0f} s"]
             for r in summary["lora"]]
    return (["fine-tuning", "trainable parameters", "exact best (T, P)", "exact gain (kept)",
             "sampled at its best (T, P ± SE)", "sampled gain (95% CI, kept)", "train, evaluate"],
            [full, *ranks])
