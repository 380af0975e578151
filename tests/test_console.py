"""What a driver's console shows of its stages: one line per stage, each stage's own output in
its log (a real subprocess here), and a failed stage's last log lines on the console."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssd.identity import StagePlan
from ssd.pipeline import stages
from ssd.pipeline.stages import (
    LockSettings,
    StageFailed,
    StageRun,
    ensure,
    latest_progress,
    readable_lines,
    stage_log,
)

CHATTY = """
import sys
for i in range(100):
    print(f"engine chatter {i}")
    print(f"warning {i}", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def chatty_stage(tmp_path: Path, status: int) -> StageRun:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    plan = StagePlan("chatty", tmp_path / "run", "id", "record.json")
    # an absolute script path stays itself under REPO_ROOT / script
    return StageRun("chatty", str(script), [str(status)], plan)


@pytest.fixture
def quiet_console():
    saved = (stages.console.verbose, stages.console.tail_lines)
    stages.console.verbose, stages.console.tail_lines = False, 40
    yield stages.console
    stages.console.verbose, stages.console.tail_lines = saved


def test_a_failed_stage_prints_its_logs_tail_and_keeps_the_whole_log(
        tmp_path: Path, capfd, quiet_console) -> None:
    stage = chatty_stage(tmp_path, 3)
    with pytest.raises(StageFailed) as failed:
        ensure(stage, "[1/1]", "test", LockSettings(), "job")
    assert failed.value.returncode == 3 and "chatty.log" in str(failed.value)
    out, err = capfd.readouterr()
    assert out.splitlines() == [f"test [1/1] chatty: computing -> {stage.run_dir}"]
    tail = err.split("--- the last 40 lines of ", 1)[1].splitlines()[1:41]
    assert tail[-1] == "warning 99" and len(tail) == 40
    assert "engine chatter 0" not in err
    log = stage_log(stage).read_text()
    assert all(f"engine chatter {i}\n" in log and f"warning {i}\n" in log for i in range(100))


def test_verbose_streams_the_stage_to_the_console_and_the_log(
        tmp_path: Path, capfd, quiet_console) -> None:
    quiet_console.verbose = True
    stage = chatty_stage(tmp_path, 4)
    with pytest.raises(StageFailed):
        ensure(stage, "[1/1]", "test", LockSettings(), "job")
    out, _ = capfd.readouterr()
    assert "engine chatter 99" in out and "warning 50" in out
    assert "engine chatter 99" in stage_log(stage).read_text()


def test_a_resumed_stage_appends_to_its_log(tmp_path: Path, quiet_console) -> None:
    stage = chatty_stage(tmp_path, 5)
    for _ in range(2):
        with pytest.raises(StageFailed):
            ensure(stage, "[1/1]", "test", LockSettings(), "job")
    assert stage_log(stage).read_text().count("engine chatter 7\n") == 2


def test_progress_redraws_read_as_their_last_state() -> None:
    raw = ("loading\r\n samples:  10%|#         | 1/10 [00:01<00:09]\r samples:  20%|##        "
           "| 2/10 [00:02<00:08]\nnext line\n")
    assert readable_lines(raw) == ["loading", " samples:  20%|##        | 2/10 [00:02<00:08]",
                                   "next line"]
    assert latest_progress(raw) == "samples:  20%|##        | 2/10 [00:02<00:08]"
    assert latest_progress("no bar here\n") is None


def test_the_console_settings_are_a_config_group_of_every_driver() -> None:
    from tests.conftest import compose

    for driver in ("demo", "lab", "pipeline"):
        cfg = compose(driver, ["console.verbose=true"])
        assert cfg.console.verbose is True and cfg.console.tail_lines == 40
