"""A study's declared stages (``conf/study/<name>.yaml``: ``study.stages``), read and checked.

Pure: a composed ``study`` config in, a list of ``StageSpec`` out, or one ``ConfigError`` naming
the key. A declared stage is one of the three scripts with its own overrides and how it is fed:

    script       generate | train | evaluate
    overrides    its Hydra overrides (the scale's for its script follow them)
    samples      train: the generate stage whose filtered training set it trains on
    model        evaluate: the train stage whose exports it evaluates (absent: the base model)
    checkpoints  evaluate with a model: last | all | every_<k> of that run's exports, or
                 best_of:<stage>: the one export with the best pass@1 in <stage>, an evaluate
                 stage above it of every export of the same model (on other problems)
    sweep        evaluate: {key: [values]}: one ``evaluate.py -m`` (one engine for all values)
    each         {name: [values]}: one stage per value, ``{name}`` in its overrides replaced and
                 the value appended to its name (``ssd`` with benchmark lcb_v6: ``ssd lcb_v6``)
    role         what the study's report reads the stage as (ssd, base, base_sweep, ...)
    enabled      false: the stage is left out (a switch such as the grid's eval.base)

Stages run in the order declared; a stage may only be fed by one declared above it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ssd.config import ConfigError

SCRIPTS = ("generate", "train", "evaluate")
BEST_OF = "best_of:"   # checkpoints: the export another stage scored best
FIELDS = ("script", "overrides", "samples", "model", "checkpoints", "sweep", "each", "role",
          "enabled")


@dataclass(frozen=True)
class StageSpec:
    """One stage run of a study (after ``each`` is expanded)."""

    name: str
    script: str
    overrides: tuple[str, ...] = ()
    samples: str | None = None
    model: str | None = None
    checkpoints: str = "last"
    sweep: tuple[str, tuple[Any, ...]] | None = None
    role: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)   # the ``each`` values

    @property
    def source(self) -> str:
        """The stage it reads from (its ``samples`` or ``model``), if any."""
        return self.samples or self.model or ""


def _key(name: str, field_name: str) -> str:
    return f"study.stages.{name}.{field_name}"


def _override_items(name: str, items: Any) -> list[tuple[str, bool]]:
    """The stage's overrides as Hydra override strings, each with whether ``each`` placeholders
    are filled in it. An item is a string (``eval={benchmark}``, ``decoding=baseline``), a
    one-key mapping whose value is typed (``{data.limit: 24}``: written by ``ssd.overrides``, so
    a null, a bool or a path with spaces reach the stage as themselves), or a list of such items
    (an interpolated list of extra overrides)."""
    from ssd.overrides import overrides_from

    if not isinstance(items, Sequence) or isinstance(items, str):
        raise ConfigError(f"{_key(name, 'overrides')}={items}: must be a list of Hydra overrides, "
                          "e.g. [eval=lcb_v6, decoding=baseline, {eval.limit: 4}]")
    found: list[tuple[str, bool]] = []
    for item in items:
        if isinstance(item, str):
            found.append((item, True))
        elif isinstance(item, Mapping) and len(item) == 1:
            found += [(override, False) for override in overrides_from(item)]
        elif isinstance(item, Sequence):
            found += _override_items(name, item)
        else:
            raise ConfigError(f"{_key(name, 'overrides')}: {item!r} is not an override (a "
                              "string key=value, a one-key mapping {key: value}, or a list)")
    return found


def _expansions(name: str, each: Any) -> list[dict[str, Any]]:
    """Every combination of the ``each`` values (one dict per stage), or [{}] without ``each``."""
    if each is None:
        return [{}]
    if not isinstance(each, Mapping) or not each or not all(
            isinstance(v, Sequence) and not isinstance(v, str) and len(v) >= 1
            for v in each.values()):
        raise ConfigError(f"{_key(name, 'each')}={each}: must be a mapping of names to non-empty "
                          "lists, e.g. {benchmark: [lcb_v6, lcb_v5]}")
    names = list(each)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(each[n] for n in names))]


def _fill(text: str, labels: Mapping[str, Any], key: str) -> str:
    try:
        return text.format(**labels)
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(f"{key}: '{text}' names a placeholder {error} that the stage's each "
                          "does not give (write {name} for an each name)") from None


def read_stages(stages: Mapping[str, Any], checkpoint_ok: Any) -> list[StageSpec]:
    """The declared stages in order, expanded and checked. ``checkpoint_ok`` tells a valid
    ``checkpoints`` value (the drivers' shared rule)."""
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError("study.stages: must declare at least one stage (conf/study/main.yaml)")
    specs: list[StageSpec] = []
    declared: dict[str, Mapping[str, Any]] = {}   # the stages above, by declared name
    for name, stage in stages.items():
        if not isinstance(stage, Mapping):
            raise ConfigError(f"study.stages.{name}: must be a mapping (script, overrides, ...)")
        unknown = sorted(set(stage) - set(FIELDS))
        if unknown:
            raise ConfigError(f"{_key(name, unknown[0])}: not a stage field; use one of "
                              + ", ".join(FIELDS))
        enabled = stage.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{_key(name, 'enabled')}={enabled}: must be true or false")
        if not enabled:
            continue
        script = stage.get("script")
        if script not in SCRIPTS:
            raise ConfigError(f"{_key(name, 'script')}={script}: must be one of "
                              + ", ".join(SCRIPTS))
        overrides = _override_items(name, stage.get("overrides") or [])
        _check_feeds(name, script, stage, declared, checkpoint_ok)
        sweep = _sweep(name, script, stage.get("sweep"))
        for labels in _expansions(name, stage.get("each")):
            suffix = " ".join(str(v) for v in labels.values())
            specs.append(StageSpec(
                name=f"{name} {suffix}" if suffix else str(name), script=script,
                overrides=tuple(_fill(o, labels, _key(name, "overrides")) if fill else o
                                for o, fill in overrides),
                samples=stage.get("samples"), model=stage.get("model"),
                checkpoints=str(stage.get("checkpoints") or "last"), sweep=sweep,
                role=stage.get("role"), labels=labels))
        declared[str(name)] = stage
    return specs


def _check_feeds(name: str, script: str, stage: Mapping[str, Any],
                 declared: Mapping[str, Mapping[str, Any]], checkpoint_ok: Any) -> None:
    """``samples`` and ``model`` name a stage declared above of the right script; a
    ``best_of`` selection names an evaluation above of the same model's exports."""
    kinds = {n: str(s.get("script")) for n, s in declared.items()}
    for field_name, (owner, source) in (("samples", ("train", "generate")),
                                        ("model", ("evaluate", "train"))):
        value = stage.get(field_name)
        if value is None:
            continue
        if script != owner:
            raise ConfigError(f"{_key(name, field_name)}: only a {owner} stage reads "
                              f"{field_name} (this one is {script})")
        if kinds.get(str(value)) != source:
            above = [n for n, s in kinds.items() if s == source] or ["none declared yet"]
            raise ConfigError(f"{_key(name, field_name)}={value}: must name a {source} stage "
                              "declared above it: " + ", ".join(above))
    if script == "train" and stage.get("samples") is None:
        raise ConfigError(f"{_key(name, 'samples')}: a train stage needs the generate stage it "
                          "trains on, e.g. samples: generate")
    if stage.get("checkpoints") is not None:
        if script != "evaluate" or stage.get("model") is None:
            raise ConfigError(f"{_key(name, 'checkpoints')}: only an evaluate stage with a model "
                              "selects checkpoints")
        chosen = str(stage.get("checkpoints"))
        if chosen.startswith(BEST_OF):
            source = declared.get(chosen.removeprefix(BEST_OF), {})
            if source.get("script") != "evaluate" or source.get("model") != stage.get("model"):
                raise ConfigError(f"{_key(name, 'checkpoints')}={chosen}: must name an enabled "
                                  f"evaluate stage above it of the same model "
                                  f"({stage.get('model')}); the main study's select stage is "
                                  "enabled by study.select_on=<eval preset>")
        elif not checkpoint_ok(chosen):
            raise ConfigError(f"{_key(name, 'checkpoints')}={chosen}: must be last, all, "
                              "every_<k> (k >= 1) or best_of:<stage>")


def _sweep(name: str, script: str, sweep: Any) -> tuple[str, tuple[Any, ...]] | None:
    if sweep is None:
        return None
    if script != "evaluate":
        raise ConfigError(f"{_key(name, 'sweep')}: only an evaluate stage sweeps (one engine "
                          "for all values)")
    if (not isinstance(sweep, Mapping) or len(sweep) != 1
            or not all(isinstance(v, Sequence) and not isinstance(v, str) and len(v) >= 1
                       and len(set(v)) == len(v) for v in sweep.values())):
        raise ConfigError(f"{_key(name, 'sweep')}={sweep}: must be one key with a list of "
                          "distinct values, e.g. {decoding.T: [0.6, 0.8, 1.0]}")
    [(key, values)] = sweep.items()
    return str(key), tuple(values)
