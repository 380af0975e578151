"""The grid end to end on the tiny model (real pipeline.py, generate.py, train.py and evaluate.py
processes), as one history of commands on one workspace, the way a researcher grows a grid:

1. two overlapping commands started together share their generation and training;
2. a grid killed mid-training resumes without doing a stage twice;
3. a 2 x 2 x 2 grid computes what is new (a truncation named by its values reuses the runs of the
   preset with those values) and a rerun computes nothing;
4. a changed filter refilters and retrains but never resamples.

Each step reuses what the steps before it computed (that reuse is itself under test), so each
test reads its step's record: what the command printed and which computations it added, counted
from the stages' own records. The history runs once per session (a test run alone runs it all).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from ssd.pipeline.stages import COMPUTATIONS_FILE
from tests.conftest import REPO

pytestmark = pytest.mark.slow

# Stages of seconds: 8 prompts x 48 tokens, 4 training steps of 2 sequences (exports at step 2 and
# final), 2 problems x 5 samples of 16 tokens. The tiny model's samples are mostly one line, so
# the grid keeps those (the filter is not what step 3 tests).
TINY = ["model=tiny", "logger=none", "gen.limit=8", "eval.benchmark=lcb_sample",
        'gen.overrides=["decoding.max_tokens=48","progress=false","engine.enforce_eager=true",'
        '"filter.drop_single_line=false"]',
        'train.overrides=["trainer.max_steps=4","trainer.global_batch_size=2",'
        '"trainer.save_every_n_steps=2","trainer.max_seq_len=512","progress=false"]',
        'eval.overrides=["eval.limit=2","eval.n=5","decoding.max_tokens=16","progress=false",'
        '"engine.enforce_eager=true"]',
        "lock.poll_s=0.5"]
REFILTERED = [o.replace('"filter.drop_single_line=false"]', '"filter.drop_single_line=false",'
                        '"filter.drop_shortest_fraction=0.5"]') for o in TINY]
ONE_TRAINING = ["gen.T=1.0", "gen.truncation=none"]


def grid_command(sweep: Path, *extra: str, tiny: list[str] = TINY) -> list[str]:
    return [sys.executable, str(REPO / "pipeline.py"), "-m", *tiny, *extra,
            f"hydra.sweep.dir={sweep}"]


def run_grid(workspace: Path, sweep: str, *extra: str, tiny: list[str] = TINY) -> str:
    result = subprocess.run(grid_command(workspace / sweep, *extra, tiny=tiny), cwd=workspace,
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def computed(workspace: Path) -> Counter:
    """Completed computations per stage kind, from the stages' own records."""
    counts: Counter = Counter()
    for record in (workspace / "runs").rglob(COMPUTATIONS_FILE):
        kind = record.relative_to(workspace / "runs").parts[0]
        if record.parent.name.startswith("filter-"):
            kind = "filter"  # a filter step computed on its own (samples already complete)
        elif kind == "evaluate":
            kind += " base" if record.parts[-4] == "tiny" else " ssd"
        counts[kind] += len(record.read_text().splitlines())
    return counts


def per_stage(workspace: Path) -> set[int]:
    """How many computations each stage run recorded (1 everywhere: none done twice)."""
    return {len(p.read_text().splitlines()) for p in (workspace / "runs").rglob(COMPUTATIONS_FILE)}


def trainings(workspace: Path) -> set[Path]:
    return set((workspace / "runs").glob("train/tiny/*/identity.json"))


@dataclass
class Step:
    outputs: list[str]   # what each command of the step printed
    added: Counter       # computations the step added, per stage kind
    once: bool           # no stage run has computed twice so far


class History:
    def __init__(self, workspace: Path) -> None:
        self.workspace: Path = workspace
        self.steps: dict[str, Step] = {}
        self.claimed: set[Path] = set()   # the training the killed grid had claimed
        self.samples_before: dict[Path, bytes] = {}   # before the refiltering step
        self._counted: Counter = Counter()

    def record(self, name: str, *outputs: str) -> Step:
        now = computed(self.workspace)
        step = Step(list(outputs), now - self._counted, per_stage(self.workspace) == {1})
        self._counted = now
        self.steps[name] = step
        return step


def overlapping(history: History) -> None:
    """Two commands started together: one generation and training, two T_eval values each (one
    shared); the final checkpoint evaluated; the base model at the grid's decoding."""
    workspace = history.workspace
    commands = [grid_command(workspace / name, *ONE_TRAINING, values, "eval.base_decoding=grid")
                for name, values in (("a", "eval.T=0.6,1.0"), ("b", "eval.T=1.0,1.4"))]
    processes = [subprocess.Popen(c, cwd=workspace, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for c in commands]
    outputs = [p.communicate(timeout=1500)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    history.record("overlapping", *outputs)


def killed(history: History) -> None:
    """The same training at a second truncation (top20_p08), killed (the whole process group:
    pipeline.py, train.py, torchrun, the rank) once that training has claimed its run directory,
    then the same command again."""
    workspace = history.workspace
    grid = ["gen.T=1.0", "gen.truncation=none,top20_p08", "eval.T=1.0"]
    before = trainings(workspace)
    with open(workspace / "killed.log", "w") as log:
        process = subprocess.Popen(grid_command(workspace / "killed", *grid), cwd=workspace,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while (trainings(workspace) == before and process.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        alive = process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert alive, (workspace / "killed.log").read_text()[-3000:]
    history.claimed = {p.parent for p in trainings(workspace) - before}
    history.record("killed", (workspace / "killed.log").read_text())
    history.record("resumed", run_grid(workspace, "resumed", *grid))


def full_grid(history: History) -> None:
    grid = ["gen.T=1.0,2.0", "gen.truncation=none,k20_p0.8", "eval.T=0.6,1.4"]
    history.record("grid", run_grid(history.workspace, "first", *grid))
    history.record("grid again", run_grid(history.workspace, "again", *grid))


def refiltered(history: History) -> None:
    """The first training's cell with another filter value (drop the shortest half)."""
    history.samples_before = sampled(history.workspace)
    history.record("refiltered", run_grid(history.workspace, "refiltered", *ONE_TRAINING,
                                          "eval.T=1.0", "eval.base=false", tiny=REFILTERED))


def sampled(workspace: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (workspace / "runs").rglob("samples.jsonl")}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    history = History(tmp_path_factory.mktemp("grid"))
    for step in (overlapping, killed, full_grid, refiltered):
        step(history)
    return history


def test_overlapping_grids_compute_each_shared_stage_once(history: History) -> None:
    step = history.steps["overlapping"]
    # 1 generation, 1 training, 3 T_eval, 3 base evaluations: each once
    assert step.added == {"generate": 1, "train": 1, "evaluate ssd": 3, "evaluate base": 3}
    assert step.once
    assert any("is computing it; waiting" in out for out in step.outputs)
    # every stage lock released (".merge.lock" is generate.py's own, a permanent flock file)
    assert not [p for p in (history.workspace / "runs").rglob("*.lock")
                if not p.name.startswith(".")]


def test_a_killed_grid_resumes_without_doing_a_stage_twice(history: History) -> None:
    # before the kill: the first cell's base evaluation (Table 4's decoding, new) and the second
    # cell's generation; its training claimed, not complete
    assert history.steps["killed"].added == {"evaluate base": 1, "generate": 1}
    resumed = history.steps["resumed"]
    assert "took over a stale lock" in resumed.outputs[0]
    assert resumed.added == {"train": 1, "evaluate ssd": 1}
    assert resumed.once
    # the claimed training computed once, resuming in the run directory the kill left
    [claimed] = history.claimed
    records = (claimed / COMPUTATIONS_FILE).read_text().splitlines()
    assert [json.loads(r)["resumed"] for r in records] == [True]


def test_the_grid_computes_every_stage_once_and_a_rerun_nothing(history: History) -> None:
    step, sweep = history.steps["grid"], history.workspace / "first"
    # T_train 1.0 was trained before at both truncations (k20_p0.8 has top20_p08's values, so
    # its runs): only T_train 2.0 generates and trains; 6 of the 8 (cell, final) evaluations are
    # new; the base model (Table 4's decoding, whatever T_eval) was evaluated by step 2.
    assert step.added == {"generate": 2, "train": 2, "evaluate ssd": 6}
    assert step.once
    cells = [json.loads(p.read_text()) for p in sweep.rglob("cell.json")]
    assert len(cells) == 8
    assert sum(s["computed"] for c in cells for s in c["stages"]) == 2 + 2 + 6
    assert all(0 <= c["diagnostics"]["code_block"] <= 1 for c in cells)
    grid = json.loads((sweep / "grid.json").read_text())
    assert len(grid["rows"]) == 8 and {f["group"] for f in grid["fits"]} == {"none", "k20_p0.8"}
    assert {f["group"] for f in grid["fits_pass@5"]} == {"none", "k20_p0.8"}
    [base] = grid["base"]
    assert (base["reference"], base["t_eval"], base["top_k"]) == ("table4", 0.7, 20)
    assert (sweep / "heatmap_k20_p0.8.png").exists()
    # every evaluation (8 SSD, 1 base) on the same 2 problems, under the default grader
    [stamp] = grid["stamps"]
    assert len(stamp["evaluations"]) == 9 and stamp["grader"]["name"] == "default"
    assert stamp["problem_set"]["problems"] == 2
    markdown = (sweep / "grid.md").read_text()
    assert "Every evaluation (9): problem set " in markdown
    assert "Base model reference: Table 4's decoding" in markdown

    again = history.steps["grid again"]
    assert not again.added
    assert ": done in" not in again.outputs[0]
    # generation, filter, training, final, base
    assert again.outputs[0].count("complete, reused") == 8 * 5
    assert (history.workspace / "again" / "grid.md").read_text().split("## Every")[1] == (
        markdown.split("## Every")[1])


def test_a_changed_filter_in_the_grid_refilters_and_retrains_but_never_resamples(
        history: History) -> None:
    """The stale-reuse case through pipeline.py: the first training's cell with another filter
    value reuses the samples, computes the new filter step, and trains and evaluates again."""
    step = history.steps["refiltered"]
    assert "generate: complete, reused" in step.outputs[0]
    assert step.added == {"filter": 1, "train": 1, "evaluate ssd": 1}
    assert sampled(history.workspace) == history.samples_before
    [generated] = (history.workspace / "runs" / "generate").rglob("T1_k0_p1_*")
    sets = sorted(generated.glob("filter-*/train.jsonl"), key=lambda p: p.stat().st_mtime)
    assert len(sets) == 2
    assert len(sets[1].read_text().splitlines()) < len(sets[0].read_text().splitlines())
