"""The transfer suite (``evaluate.py eval=transfer``) and its base-vs-SSD report
(``analyze.py command=transfer``): scored from given completions (no model; known answers, so
known differences), and end to end on the tiny model with one engine start (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssd import sampling as engine_module
from ssd.analysis.report import run_analysis
from ssd.config import ConfigError
from ssd.evaluation import load_humaneval
from ssd.evaluation.cruxeval import load_cruxeval
from ssd.evaluation.run import check_eval, run_evaluation
from ssd.evaluation.shell import load_humaneval_sh
from ssd.evaluation.suite import COLUMNS
from ssd.evaluation.tasks import load_aime, load_mmlu
from tests.conftest import REPO, compose

TRANSFER = REPO / "data" / "transfer"
SETS = ["aime24", "humaneval", "mmlu"]  # the answer tasks and a program task, no model needed


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def completions(folder: Path, right: dict[str, list[list[bool]]]) -> Path:
    """<folder>/<set>.jsonl: per set, per problem (the first ones), per sample, a right or a
    wrong answer written as a model would (AIME: a wrong one has no box or a code block)."""
    folder.mkdir()
    aime = load_aime(str(TRANSFER / "aime" / "aime24.jsonl"))
    mmlu = load_mmlu(str(TRANSFER / "mmlu" / "mmlu_test.jsonl.gz"))
    humaneval = load_humaneval()

    def aime_text(problem, ok: bool, index: int) -> str:
        if ok:
            return f"Step by step ... so the answer is $\\boxed{{{problem.reference}}}$."
        return "```python\nprint(42)\n```" if index else "I could not finish."

    def mmlu_text(problem, ok: bool, index: int) -> str:
        letter = problem.reference if ok else "ABCD"[("ABCD".index(problem.reference) + 1) % 4]
        return f"Thinking it through ...\n\n**Answer: {letter}**"

    def humaneval_text(problem, ok: bool, index: int) -> str:
        body = problem.reference if ok else "    return None\n"
        return f"```python\n{problem.starter_code}{body}```"

    writers = {"aime24": (aime, aime_text), "mmlu": (mmlu, mmlu_text),
               "humaneval": (humaneval, humaneval_text)}
    for name, plan in right.items():
        problems, text = writers[name]
        _write(folder / f"{name}.jsonl",
               [{"question_id": p.question_id, "sample_index": i, "completion": text(p, ok, i)}
                for p, samples in zip(problems, plan, strict=False)
                for i, ok in enumerate(samples)])
    return folder


def suite(tmp_path: Path, name: str, right: dict[str, list[list[bool]]]) -> Path:
    given = completions(tmp_path / f"{name}-completions", right)
    return run_evaluation(compose("evaluate", [
        "eval=transfer", f"eval.suite=[{','.join(SETS)}]", "eval.limit=2",
        f"eval.completions={given}", "logger=none", "progress=false", "eval.workers=2",
        f"output_dir={tmp_path}/{name}"]))


BASE = {"aime24": [[True, True], [False, False]], "humaneval": [[True, True], [False, False]],
        "mmlu": [[True, True], [True, True]]}
SSD = {"aime24": [[True, True], [True, False]], "humaneval": [[True, True], [True, True]],
       "mmlu": [[True, True], [False, False]]}


@pytest.mark.slow  # two suites scored through evaluate.py, and the MMLU bootstrap
def test_report_from_two_suites_of_given_completions(tmp_path: Path) -> None:
    starts = engine_module.engine_starts
    base, ssd = suite(tmp_path, "base", BASE), suite(tmp_path, "ssd", SSD)
    assert engine_module.engine_starts == starts  # nothing sampled
    index = json.loads((base / "transfer.json").read_text())
    entries = {e["benchmark"]: e for e in index["benchmarks"]}
    assert [e["benchmark"] for e in index["benchmarks"]] == SETS
    assert entries["aime24"]["value"] == 0.5 and entries["aime24"]["metric"] == "accuracy"
    assert entries["aime24"]["failures"] == {"no_answer": 1, "code_block_instead": 1}
    assert entries["humaneval"]["value"] == 0.5 and entries["humaneval"]["metric"] == "pass@1"
    assert entries["mmlu"]["value"] == 1.0 and entries["mmlu"]["macro"] == 1.0
    assert set(entries["mmlu"]["per_subject"]) == {"abstract_algebra"}
    for entry in entries.values():  # every set is its own evaluation run
        run = json.loads((Path(entry["run_dir"]) / "metrics.json").read_text())
        assert run["status"] == "complete" and run["problems"] == 2
        assert entry["low"] <= entry["value"] <= entry["high"]
    records = [json.loads(x) for x in
               (Path(entries["mmlu"]["run_dir"]) / "results.jsonl").read_text().splitlines()]
    assert {(r["answer_class"], r["subject"]) for r in records} == {
        ("answered", "abstract_algebra")}
    table = (base / "transfer.md").read_text()
    assert "| model | AIME'24 | HumanEval Py | MMLU |" in table
    assert "Please reason step by step" in table  # the prompt, stated

    cfg = compose("analyze", ["command=transfer", f"transfer.base={base}",
                              f"transfer.ssd={ssd / 'transfer.json'}", "stats.resamples=2000",
                              "logger.wandb.mode=offline"])
    payload = run_analysis(cfg, tmp_path / "report")
    rows = {r["benchmark"]: r for r in payload["sets"]}
    assert {k: round(100 * r["difference"]["estimate"]) for k, r in rows.items()} == {
        "aime24": 25, "humaneval": 50, "mmlu": -50}
    assert rows["aime24"]["failures"]["ssd"] == {"no_answer": 0, "code_block_instead": 1}
    assert payload["paper_model"] is None  # the given completions name no paper preset
    report = (tmp_path / "report" / "transfer.md").read_text()
    assert "| +SSD - base | +25.0 [" in report and "| base | 50.0 [" in report
    assert json.loads((tmp_path / "report" / "transfer.json").read_text())["columns"] == [
        "", "AIME'24", "HumanEval Py", "MMLU"]
    assert payload["wandb"] is not None
    assert list((tmp_path / "report" / "wandb").glob("offline-run-*/run-*.wandb"))

    with pytest.raises(ConfigError, match=r"^transfer\.ssd=.*: not a transfer suite"):
        run_analysis(compose("analyze", ["command=transfer", f"transfer.base={base}",
                                         f"transfer.ssd={tmp_path}", "logger=none"]),
                     tmp_path / "bad")


def test_suite_keys_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^eval\.suite=.*: must be a non-empty list"):
        check_eval(compose("evaluate", ["eval=transfer", "eval.suite=[aime24,nope]"]))
    with pytest.raises(ConfigError, match=r"^eval\.completions=.*: must be null, or a folder"):
        check_eval(compose("evaluate", ["eval=transfer", "eval.suite=[aime24]",
                                        f"eval.completions={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"^eval\.limit=0: must be an integer >= 1"):
        check_eval(compose("evaluate", ["eval=transfer", "eval.limit=0"]))
    with pytest.raises(ConfigError, match=r"^eval\.ks=\[5\]: must be a list with at least one k"):
        check_eval(compose("evaluate", ["eval=transfer", "eval.suite=[mmlu]", "eval.ks=[5]"]))


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python evaluate.py model=tiny eval=transfer eval.limit=2`` (short samples), run once."""
    where = tmp_path_factory.mktemp("transfer")
    command = [sys.executable, str(REPO / "evaluate.py"), "model=tiny", "eval=transfer",
               "eval.limit=2", "eval.n=2", "decoding.max_tokens=16", "engine.enforce_eager=true",
               "logger=none", "progress=false"]
    result = subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    found = list((where / "runs" / "evaluate" / "tiny" / "transfer").glob("*/transfer.json"))
    assert len(found) == 1
    return found[0].parent


@pytest.mark.slow
def test_tiny_model_suite_one_engine_seven_columns(tiny_suite: Path) -> None:
    index = json.loads((tiny_suite / "transfer.json").read_text())
    assert index["engine_starts"] == 1
    assert [e["column"] for e in index["benchmarks"]] == list(COLUMNS.values())
    table = (tiny_suite / "transfer.md").read_text()
    assert "| model | " + " | ".join(COLUMNS.values()) + " |" in table
    for entry in index["benchmarks"]:
        metrics = json.loads((Path(entry["run_dir"]) / "metrics.json").read_text())
        assert (metrics["problems"], metrics["samples"], metrics["n"]) == (2, 4, 2)
        assert metrics["engine_starts"] == 1
        assert 0 <= entry["low"] <= entry["value"] <= entry["high"] <= 1


@pytest.mark.slow
def test_tiny_model_report_from_the_suite_without_sampling(tiny_suite: Path,
                                                            tmp_path: Path) -> None:
    cfg = compose("analyze", ["command=transfer", f"transfer.base={tiny_suite}",
                              f"transfer.ssd={tiny_suite}", "stats.resamples=500", "logger=none"])
    payload = run_analysis(cfg, tmp_path)
    assert [r["column"] for r in payload["sets"]] == list(COLUMNS.values())
    assert all(r["difference"]["estimate"] == 0 for r in payload["sets"])  # the same samples


def test_program_tasks_are_checked_in_the_sandbox_through_the_task_table(tmp_path: Path) -> None:
    """CruxEval and HumanEval-Shell completions go through their task's program builder and the
    sandbox; a rejected answer is a no_code failure that says why."""
    crux = load_cruxeval(TRANSFER / "cruxeval" / "cruxeval.jsonl", "output")[:2]
    rows = []
    for p in crux:
        test = p.tests[0]
        rows += [{"question_id": p.question_id, "sample_index": 0,
                  "completion": f"[ANSWER]\nassert f({test.input}) == {test.output}\n[/ANSWER]"},
                 {"question_id": p.question_id, "sample_index": 1,
                  "completion": f"[ANSWER]\nassert f({test.input}) == f({test.input})\n[/ANSWER]"}]
    _write(tmp_path / "crux.jsonl", rows)
    out = run_evaluation(compose("evaluate", [
        "eval=cruxeval_output", "eval.limit=2", f"eval.completions={tmp_path / 'crux.jsonl'}",
        "eval.ks=[1]", "logger=none", "progress=false", f"output_dir={tmp_path}/crux"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pass@1"] == 0.5 and metrics["no_code"] == {"calls_f": 2}

    shell = load_humaneval_sh(TRANSFER / "humaneval_sh" / "humaneval-sh.jsonl")[:2]
    _write(tmp_path / "sh.jsonl", [{"question_id": p.question_id, "sample_index": 0,
                                    "completion": "```bash\necho 0\n```"} for p in shell])
    out = run_evaluation(compose("evaluate", [
        "eval=humaneval_sh", "eval.limit=2", f"eval.completions={tmp_path / 'sh.jsonl'}",
        "eval.ks=[1]", "logger=none", "progress=false", f"output_dir={tmp_path}/sh"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pass@1"] == 0 and metrics["samples"] == 2
    assert "no_code" not in metrics["reasons"]  # a program ran and failed


def test_the_papers_rows_sit_beside_for_a_paper_preset() -> None:
    from ssd.analysis.transfer import PAPER_TABLE5, table

    value = {"estimate": 0.5, "low": 0.4, "high": 0.6}
    rows = [{"column": column, "base": value, "ssd": value, "p": 1.0,
             "difference": {"estimate": 0.0, "low": -0.1, "high": 0.1}}
            for column in COLUMNS.values()]
    header, body = table(rows, PAPER_TABLE5["qwen3-4b-instruct-2507"])
    assert header[1:] == list(COLUMNS.values())
    assert [row[0] for row in body] == ["base", "+SSD", "+SSD - base", "paper: base",
                                        "paper: +SSD", "paper: +SSD - base"]
    assert body[3][1:] == ["61.3", "44.6", "87.8", "47.5", "85.5", "77.6", "70.6"]
    assert body[5][4] == "-15.8"  # HumanEval-Shell, the headline loss
