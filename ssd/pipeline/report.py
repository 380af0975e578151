"""The demo's report: stage records (run.json, filter counts, metrics.csv, metrics.json,
results.jsonl) -> report.md and loss.png.

``build_report`` is a pure function of ``DemoRecords`` (tested on synthetic records);
``load_records`` and ``write_report`` are the file I/O around it. Everything the report says is
read from what the stages wrote, not from the demo's own config, so it describes the runs that
actually produced the numbers (including ones reused from an earlier invocation).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd import stamps
from ssd.bootstrap import Comparison, compare, comparison_note, comparison_table, problem_results
from ssd.passk import UNLABELED
from ssd.plotting import pyplot, save_figure
from ssd.tables import markdown_table

ROLES = ("base", "ssd")
ROLE_TITLES = {"base": "base", "ssd": "SSD"}


@dataclass
class EvalRecord:
    """One evaluate.py run of the demo."""

    benchmark: str
    role: str                             # "base" | "ssd"
    metrics: dict[str, Any]               # its metrics.json
    results: list[dict[str, Any]]         # its results.jsonl (for the example completions)
    run_dir: str


@dataclass
class DemoRecords:
    """Everything the report is made of."""

    model: str                            # the conf/model preset
    scale: float
    generate: dict[str, Any]              # generate's run.json (the sampling record)
    generate_dir: str
    filter: dict[str, Any]                # the filter step's filter.json (counts per reason)
    filter_dir: str
    train: dict[str, Any]                 # train's run.json (resolved config inside)
    train_dir: str
    loss: list[tuple[int, float]]         # (step, train/loss) from csv/metrics.csv
    evaluations: list[EvalRecord]
    train_example: dict[str, Any] | None = None   # first record of train.jsonl
    loss_image: str | None = None         # the PNG, relative to the report
    timings: list[tuple[str, float | None]] = field(default_factory=list)  # this invocation
    stats: dict[str, Any] = field(default_factory=dict)  # ssd.bootstrap.compare's options


# -- pure helpers -------------------------------------------------------------------------------
def loss_points(csv_text: str) -> list[tuple[int, float]]:
    """(step, loss) rows of a Lightning CSVLogger file, one per step in step order.

    A resumed run logs again the steps after its last checkpoint, so the last value logged for a
    step wins (it belongs to the weights that were kept)."""
    points: dict[int, float] = {}
    for row in csv.DictReader(io.StringIO(csv_text)):
        loss, step = row.get("train/loss"), row.get("step")
        if loss not in (None, "") and step not in (None, ""):
            points[int(float(step))] = float(loss)
    return sorted(points.items())


def fence(text: str, language: str = "") -> str:
    """A Markdown code block that ``text`` cannot close early, whatever backticks it holds."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{text.rstrip()}\n{ticks}"


def clip(text: str, max_lines: int = 25, max_chars: int = 1500) -> str:
    """The start of ``text``, with a note saying how much was cut."""
    lines = text.rstrip().splitlines()
    kept = "\n".join(lines[:max_lines])
    if len(kept) > max_chars:
        kept = kept[:max_chars]
    if len(kept) < len(text.rstrip()):
        kept += f"\n… [truncated: {len(text.rstrip()) - len(kept)} more characters]"
    return kept


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def change(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "–"
    return f"{100 * (after - before):+.1f} pp"


def _pass(block: Mapping[str, Any] | None, k: int) -> float | None:
    return None if block is None else block.get(f"pass@{k}")


def _ks(evaluations: Sequence[EvalRecord]) -> list[int]:
    found = sorted({int(k) for e in evaluations for k in e.metrics.get("ks", [])})
    return found or [1]


def _labelled(evaluations: Sequence[EvalRecord]) -> bool:
    return any(d != UNLABELED for e in evaluations for d in e.metrics.get("per_difficulty", {}))


def pass_header(evaluations: Sequence[EvalRecord]) -> list[str]:
    """The columns of ``pass_rows``."""
    header = ["benchmark", "subset", "problems"]
    for k in _ks(evaluations):
        header += [f"base pass@{k}", f"SSD pass@{k}", "change"]
    return header


def pass_rows(evaluations: Sequence[EvalRecord]) -> list[list[str]]:
    """Base vs SSD per benchmark (overall, then per labelled difficulty), then all benchmarks
    together (problem-weighted: every problem counts once, as within a benchmark)."""
    ks = _ks(evaluations)
    pairs: dict[str, dict[str, EvalRecord]] = {}
    for e in evaluations:
        pairs.setdefault(e.benchmark, {})[e.role] = e
    rows: list[list[str]] = []

    def row(name: str, subset: str, problems: Any, base: Mapping[str, Any] | None,
            ssd: Mapping[str, Any] | None) -> list[str]:
        cells = [name, subset, str(problems)]
        for k in ks:
            b, s = _pass(base, k), _pass(ssd, k)
            cells += [percent(b), percent(s), change(b, s)]
        return cells

    totals: dict[str, dict[str, float]] = {role: {} for role in ROLES}
    problems_total = 0
    for benchmark, pair in pairs.items():
        base, ssd = pair.get("base"), pair.get("ssd")
        some = base or ssd
        assert some is not None
        problems = some.metrics.get("problems", "?")
        rows.append(row(benchmark, "overall", problems, base and base.metrics.get("overall"),
                        ssd and ssd.metrics.get("overall")))
        labels = sorted({d for e in (base, ssd) if e for d in e.metrics.get("per_difficulty", {})
                         if d != UNLABELED})
        for label in labels:
            blocks = [e.metrics["per_difficulty"].get(label) if e else None for e in (base, ssd)]
            count = next((b["problems"] for b in blocks if b), "?")
            rows.append(row(benchmark, label, count, *blocks))
        if isinstance(problems, int):
            problems_total += problems
            for role, e in (("base", base), ("ssd", ssd)):
                for k in ks:
                    value = _pass(e.metrics.get("overall") if e else None, k)
                    if value is not None:
                        key = f"pass@{k}"
                        totals[role][key] = totals[role].get(key, 0.0) + value * problems
    if len(pairs) > 1 and problems_total:
        blocks = [{k: v / problems_total for k, v in totals[role].items()} for role in ROLES]
        rows.append(row("all benchmarks", "overall", problems_total, *blocks))
    return rows


def pick_example(base: Sequence[dict[str, Any]], ssd: Sequence[dict[str, Any]]
                 ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One problem's first base and first SSD sample: preferably one where their verdicts
    differ, else one where either passed, else the first problem both have."""
    def first(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        chosen: dict[str, dict[str, Any]] = {}
        for r in sorted(records, key=lambda r: r["sample_index"]):
            chosen.setdefault(r["question_id"], r)
        return chosen

    b, s = first(base), first(ssd)
    order = [qid for qid in b if qid in s]
    if not order:
        return None
    best = min(order, key=lambda q: (b[q]["passed"] == s[q]["passed"],
                                     not (b[q]["passed"] or s[q]["passed"]), order.index(q)))
    return b[best], s[best]


def _sum_counts(shards: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for shard in shards:
        for key, value in shard.items():
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return total


def _decoding(metrics: Mapping[str, Any]) -> str:
    d, t = metrics.get("decoding") or {}, metrics.get("truncation") or {}
    return (f"T={d.get('T')}, top-k {t.get('top_k')}, top-p {t.get('top_p')}, "
            f"max_tokens {d.get('max_tokens')}")


def _verdict(record: Mapping[str, Any]) -> str:
    if record.get("passed"):
        return "passed"
    detail = f" ({record['detail']})" if record.get("detail") else ""
    return f"failed: {record.get('reason')}{detail}"


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} s"


def recorded_seconds(r: DemoRecords) -> dict[str, float]:
    """Each stage's time as its own record states it, by the demo's stage names."""
    found: dict[str, float] = {}
    shards = [s["seconds"] for s in r.generate.get("shards", []) if "seconds" in s]
    if shards:
        found["generate"] = sum(shards)
    if r.train.get("seconds") is not None:
        found["train"] = r.train["seconds"]
    for e in r.evaluations:
        value = (e.metrics.get("counts") or {}).get("seconds")
        if value is not None:
            found[f"evaluate {e.role} {e.benchmark}"] = value
    return found


def stamp_rows(evaluations: Sequence[EvalRecord]) -> list[list[str]]:
    """Per evaluation: benchmark, model, then its problem set (name, definition, count, id
    digest) and grader (``stamps.COLUMNS``)."""
    return [[e.benchmark, ROLE_TITLES[e.role], *stamps.cells(e.metrics)] for e in evaluations]


def stamp_differences(evaluations: Sequence[EvalRecord]) -> dict[str, list[str]]:
    """Per benchmark evaluated by both models, how their problem sets or graders differ (only
    benchmarks where they do)."""
    found = {}
    for benchmark in dict.fromkeys(e.benchmark for e in evaluations):
        runs = {e.role: e for e in evaluations if e.benchmark == benchmark}
        if "base" in runs and "ssd" in runs:
            differences = stamps.differences(runs["base"].metrics, runs["ssd"].metrics)
            if differences:
                found[benchmark] = differences
    return found


# -- the report (pure) --------------------------------------------------------------------------
def diagnostics_rows(found: Mapping[str, Any] | None) -> list[list[str]]:
    """The generate run's diagnostics of its sampled text (``run.json``: ``diagnostics``) as
    table rows; "–" throughout for a run sampled before they were recorded."""
    d = found or {}
    mean = d.get("mean_completion_tokens")
    return [["with an extractable code block", percent(d.get("code_block"))],
            ["whose code block parses as Python", percent(d.get("parses"))],
            ["cut at max_tokens", percent(d.get("cut"))],
            ["mixed-script (letters of several scripts)", percent(d.get("mixed_script"))],
            ["non-ASCII characters (of all sampled text)", percent(d.get("non_ascii"))],
            ["mean completion tokens", "–" if mean is None else f"{mean:.0f}"]]


def representative_lines(found: Mapping[str, Any] | None) -> list[str]:
    """The diagnostics' representative sample (median length) as a fenced block; nothing for a
    run without diagnostics."""
    chosen = (found or {}).get("representative")
    if not chosen:
        return []
    return [f"A sample of median length ({chosen['completion_tokens']} tokens, finish reason "
            f"{chosen['finish_reason']}; prompt `{chosen['prompt_id']}`, sample "
            f"{chosen['sample_index']}):", "", fence(clip(chosen["completion"])), ""]


def decontamination_cell(record: Mapping[str, Any] | None) -> str:
    """What generate's run record says about the pool's check against evaluation sets."""
    if not record:
        return "none requested (data.decontaminate=[])"
    return (f"{record['checked']} prompts checked against {', '.join(record['sets'])}: "
            f"{record['overlapping']} overlapping dropped ({record['shares_any_ngram']} share "
            "any 8-gram)")


def paired_comparisons(r: DemoRecords) -> dict[str, Comparison]:
    """Per benchmark with both models' results, the paired bootstrap of SSD against base on the
    same problems."""
    found = {}
    for benchmark in dict.fromkeys(e.benchmark for e in r.evaluations):
        runs = {e.role: e for e in r.evaluations if e.benchmark == benchmark}
        if not ("base" in runs and "ssd" in runs and runs["base"].results
                and runs["ssd"].results):
            continue
        found[benchmark] = compare(problem_results(runs["base"].results),
                                   problem_results(runs["ssd"].results), label_a="base",
                                   label_b="SSD", **r.stats)
    return found


def paired_sections(r: DemoRecords,
                    comparisons: Mapping[str, Comparison] | None = None) -> list[str]:
    """Per benchmark, the paired bootstrap of SSD against base on the same problems, with a
    warning where the two evaluations' problem sets or graders differ."""
    if comparisons is None:
        comparisons = paired_comparisons(r)
    differing = stamp_differences(r.evaluations)
    lines = []
    for benchmark, comparison in comparisons.items():
        header, rows = comparison_table(comparison)
        lines += [f"Paired bootstrap, {benchmark} (points):", "", markdown_table(header, rows), "",
                  comparison_note(comparison), ""]
        if benchmark in differing:
            lines += [stamps.warning(differing[benchmark]), ""]
    return lines


def build_report(r: DemoRecords) -> str:
    gen_cfg = r.generate.get("config", {})
    dec, trunc = gen_cfg.get("decoding", {}), gen_cfg.get("truncation", {})
    data = gen_cfg.get("data", {})
    filt = r.filter
    shards = _sum_counts(r.generate.get("shards", []))
    tr_cfg = r.train.get("config", {})
    trainer, opt = tr_cfg.get("trainer", {}), tr_cfg.get("optimizer", {})
    by_role = {role: [e for e in r.evaluations if e.role == role] for role in ROLES}
    base_m = by_role["base"][0].metrics if by_role["base"] else {}
    ssd_m = by_role["ssd"][0].metrics if by_role["ssd"] else {}
    benchmarks = list(dict.fromkeys(e.benchmark for e in r.evaluations))
    problems = {e.benchmark: e.metrics.get("problems") for e in r.evaluations}
    n = (base_m or ssd_m).get("n")

    out: list[str] = [
        f"# SSD demo: {r.model}",
        "",
        "Simple self-distillation end to end on one small model: sample the model's own solutions "
        "to unlabeled prompts at T_train with top-k/top-p truncation, drop degenerate samples, "
        "fine-tune the model on the rest with plain cross-entropy, then evaluate the base model "
        "(at its baseline decoding) and the SSD model (at T_eval) on the same problems.",
        "",
        "## Settings",
        "",
        markdown_table(["", "value"], [
            ["model", f"{r.model} (`{gen_cfg.get('model', {}).get('path')}`)"],
            ["scale", f"{r.scale:g}"],
            ["prompt pool", f"{data.get('name')}, first {data.get('limit')} prompts "
                            f"({r.generate.get('pool', {}).get('prompts')} used)"],
            ["generation (T_train)", f"T={dec.get('T')}, top-k {trunc.get('top_k')}, top-p "
                                     f"{trunc.get('top_p')}, N={dec.get('n')}, max_tokens "
                                     f"{dec.get('max_tokens')}, seed {dec.get('seed')}"],
            ["decontamination", decontamination_cell(r.generate.get("decontamination"))],
            ["filter", ", ".join(f"{k}={v}" for k, v in filt.get("settings", {}).items())],
            ["training", f"{trainer.get('max_steps')} steps x {trainer.get('global_batch_size')} "
                         f"sequences, max_seq_len {trainer.get('max_seq_len')}, "
                         f"{r.train.get('world_size')} process(es), precision "
                         f"{trainer.get('precision')}"],
            ["optimizer", f"AdamW lr {opt.get('lr')} -> {opt.get('min_lr')} (cosine), warm-up "
                          f"{opt.get('warmup_steps')} steps, betas {opt.get('betas')}, "
                          f"weight decay {opt.get('weight_decay')}"],
            ["SSD model evaluation (T_eval)", _decoding(ssd_m) if ssd_m else "–"],
            ["base model evaluation (baseline)", _decoding(base_m) if base_m else "–"],
            ["benchmarks", ", ".join(f"{b} (first {problems[b]} problems)" for b in benchmarks)],
            ["samples per problem", f"n={n}, pass@k for k in {_ks(r.evaluations)}"],
        ]),
        "",
        "## Generation",
        "",
        markdown_table(["", "count"], [
            ["prompts", r.generate.get("pool", {}).get("prompts")],
            ["samples", filt.get("samples")],
            ["finished (stop / length)", f"{int(shards.get('finish_stop', 0))} / "
                                         f"{int(shards.get('finish_length', 0))}"],
            ["prompt tokens", int(shards.get("prompt_tokens", 0))],
            ["sampled tokens", int(shards.get("completion_tokens", 0))],
            ["cut at max_tokens (policy)", f"{(filt.get('cut_samples') or {}).get('cut')} "
                                           f"({(filt.get('cut_samples') or {}).get('policy')})"],
            ["kept for training", filt.get("kept")],
            ["of which cut, trained open (no end-of-turn label)",
             (filt.get("cut_samples") or {}).get("kept_open")],
            *[[f"dropped: {reason}", count] for reason, count in
              sorted((filt.get("dropped") or {}).items())],
            ["kept completion tokens", filt.get("kept_completion_tokens")],
            ["sampling time", f"{shards.get('seconds', 0):.0f} s"
             + (f" ({shards['completion_tokens'] / shards['seconds']:.0f} tokens/s)"
                if shards.get("seconds") and shards.get("completion_tokens") else "")],
        ]),
        "",
        "What the sampled text looks like (the generate run's diagnostics):",
        "",
        markdown_table(["", "value"], diagnostics_rows(r.generate.get("diagnostics"))),
        "",
        *representative_lines(r.generate.get("diagnostics")),
        "## Training",
        "",
    ]
    lengths = r.train.get("length_policy", {})
    trained = r.train.get("training_set", {})
    first_loss = r.loss[0][1] if r.loss else None
    last_loss = r.loss[-1][1] if r.loss else None
    out += [
        markdown_table(["", "value"], [
            ["training samples", r.train.get("samples")],
            ["tokens trained on", {"sampled_ids": "the token ids as sampled",
                                   "chat_template": "chat messages re-tokenised"}.get(
                                       trained.get("tokens"), trained.get("tokens"))],
            ["ended by the model / cut, trained open", f"{trained.get('ended')} / "
                                                       f"{trained.get('open')}"],
            ["truncated / dropped at max_seq_len", f"{lengths.get('truncated', 0)} / "
                                                   f"{lengths.get('dropped', 0)}"],
            ["loss at the first / last step", "–" if first_loss is None
             else f"{first_loss:.4f} / {last_loss:.4f}"],
            ["resumed from", r.train.get("resumed_from") or "– (one uninterrupted run)"],
            ["training time", f"{r.train.get('seconds', 0):.0f} s"
             + (" (since the resume)" if r.train.get("resumed_from") else "")],
            ["SSD model (HF export)", f"`{r.train.get('hf_export')}`"],
        ]),
        "",
    ]
    if r.loss_image and r.loss:
        out += [f"![training loss per step]({r.loss_image})", ""]
    elif not r.loss:
        out += ["(no loss rows in the run's csv/metrics.csv)", ""]

    out += [
        "## Evaluation: base vs SSD",
        "",
        markdown_table(pass_header(r.evaluations), pass_rows(r.evaluations)),
        "",
        "Change: SSD minus base, in percentage points. "
        + ("Per-difficulty rows are shown for benchmarks that label difficulty."
           if _labelled(r.evaluations) else
           "None of these benchmarks labels difficulty, so there are no per-difficulty rows."),
        "",
        "What each evaluation is about (the problem set's name, definition, problem count and "
        "the sha256 of its sorted question ids; the grader profile):",
        "",
        markdown_table(["benchmark", "model", *stamps.COLUMNS], stamp_rows(r.evaluations)),
        "",
        *stamps.grader_lines(e.metrics for e in r.evaluations),
        *[line for benchmark, found in stamp_differences(r.evaluations).items()
          for line in ("", f"{benchmark}: {stamps.warning(found)}")],
        "",
        *paired_sections(r),
    ]
    reasons = [[f"{e.benchmark}", ROLE_TITLES[e.role], e.metrics.get("samples"),
                e.metrics.get("passed"),
                ", ".join(f"{k} {v}" for k, v in (e.metrics.get("reasons") or {}).items())
                or "–",
                "–" if e.metrics.get("mean_completion_tokens") is None
                else f"{e.metrics['mean_completion_tokens']:.0f}"]
               for e in r.evaluations]
    out += [markdown_table(["benchmark", "model", "samples", "passed", "failures", "mean tokens"],
                  reasons), ""]

    out += ["## Examples", ""]
    if r.train_example:
        messages = r.train_example.get("messages", [])
        prompt = next((m["content"] for m in messages if m.get("role") == "user"), "")
        answer = next((m["content"] for m in reversed(messages)
                       if m.get("role") == "assistant"), "")
        out += ["A training sample (the model's own unverified answer at T_train, kept by the "
                "filter). Prompt:", "", fence(clip(prompt, 12, 800)), "", "Answer:", "",
                fence(clip(answer)), ""]
    for benchmark in benchmarks:
        pair = {e.role: e for e in r.evaluations if e.benchmark == benchmark}
        if "base" not in pair or "ssd" not in pair:
            continue
        chosen = pick_example(pair["base"].results, pair["ssd"].results)
        if chosen is None:
            continue
        base, ssd = chosen
        out += [f"`{base['question_id']}` ({benchmark}), sample 0 of each model:", ""]
        for role, record in (("base", base), ("ssd", ssd)):
            out += [f"{ROLE_TITLES[role]} model, {_verdict(record)}:", "",
                    fence(clip(record.get("completion", ""))), ""]
        break  # one problem is enough to see the two models side by side

    if r.timings:
        recorded = recorded_seconds(r)
        out += ["## Time", "", markdown_table(
            ["stage", "recorded by the stage's run", "wall time of this invocation"],
            [[name, seconds(recorded.get(name)), seconds(wall)] for name, wall in r.timings]),
            "", "The recorded time is the stage's own (sampling and checking, or training "
            "since the last start); a stage that was already complete takes a few seconds of "
            "wall time here: it checks its run directory and exits.", ""]

    out += [
        "## What this can and cannot show",
        "",
        f"This is a smoke test of the method's pipeline, not a result: {r.model} trained for "
        f"{trainer.get('max_steps')} steps on {r.train.get('samples')} self-generated samples, "
        "and the benchmarks contribute "
        + ", ".join(f"{problems[b]} ({b})" for b in benchmarks)
        + f" problems with n={n} samples each. One solved problem more or less moves pass@1 by "
        "many points, so every difference above is noise. The base and SSD rows also differ in "
        "decoding (the baseline T vs T_eval), as in the paper's comparison. What the run does "
        "show is that every stage ran for real on this machine (sampling with the paper's "
        "truncation, the degeneracy filter, SFT with a checkpointed, resumable trainer, an HF "
        "export that vLLM loads, sandboxed pass@k) and that the stages connect. The paper's "
        "gains need its models (4B-30B), its prompt pool (~10K problems), thousands of steps and "
        "LiveCodeBench v6 with its private tests.",
        "",
        "## Run directories",
        "",
        f"- generate: `{r.generate_dir}`",
        f"- filter: `{r.filter_dir}`",
        f"- train: `{r.train_dir}`",
        *[f"- evaluate {ROLE_TITLES[e.role]} {e.benchmark}: `{e.run_dir}`"
          for e in r.evaluations],
        "",
    ]
    return "\n".join(out)


# -- I/O ----------------------------------------------------------------------------------------
def _first_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path) as handle:
        line = handle.readline()
    return json.loads(line) if line.strip() else None


def _results(path: Path) -> list[dict[str, Any]]:
    from ssd.records import read_records

    return list(read_records(path)) if path.is_file() else []


def load_records(stages: Sequence[Any], out: Path, model: str, scale: float) -> DemoRecords:
    """Read every stage's record; ``stages`` are the demo's ``StageRun`` objects in order."""
    generate = next(s for s in stages if s.name == "generate")
    filtered = next(s for s in stages if s.name == "filter")
    train = next(s for s in stages if s.script == "train.py")
    gen_dir, train_dir = Path(generate.run_dir), Path(train.run_dir)
    filter_dir = Path(filtered.run_dir)
    metrics_csv = train_dir / "csv" / "metrics.csv"
    evaluations = [EvalRecord(s.benchmark, s.role, s.record(),
                              _results(Path(s.run_dir) / "results.jsonl"), s.run_dir)
                   for s in stages if s.script == "evaluate.py"]
    return DemoRecords(
        model=model, scale=scale,
        generate=generate.record(), generate_dir=str(gen_dir),
        filter=filtered.record(), filter_dir=str(filter_dir),
        train=train.record(), train_dir=str(train_dir),
        loss=loss_points(metrics_csv.read_text()) if metrics_csv.is_file() else [],
        evaluations=evaluations, train_example=_first_record(filter_dir / "train.jsonl"),
        timings=[(s.name, s.wall_s) for s in stages],
    )


def plot_loss(points: Sequence[tuple[int, float]], path: Path, title: str) -> Path:
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=120)
    steps, losses = zip(*points, strict=True) if points else ((), ())
    axis.plot(steps, losses, marker="o", markersize=3)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("train loss (response tokens)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path)


def write_report(records: DemoRecords, out: Path, report_name: str = "report.md",
                 image_name: str = "loss.png", lead: str = "") -> Path:
    """loss.png (when the run logged losses) and report.md in ``out``, opening with ``lead``
    (the lab's measured gain, when the demo ran it)."""
    if records.loss:
        plot_loss(records.loss, out / image_name, f"SSD training loss: {records.model}")
        records.loss_image = image_name
    path = out / report_name
    path.write_text(lead + build_report(records))
    return path
