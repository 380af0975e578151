"""``analyze.py command=decontaminate``: any prompt pool against any evaluation sets
(``ssd.data.decontamination``): per set and for all of them together, how many prompts share any
8-gram with it (open-r1's rule), how many overlap it (this project's rule, what generate.py's
``data.decontaminate`` drops) and how many of its problems they hit; a few examples.

    python analyze.py command=decontaminate data=leetcode 'decontaminate.sets=[lcb_offline_v5]'
    python analyze.py command=decontaminate data.path=pool.jsonl data.field=question \\
        'decontaminate.sets=[lcb_v6, /data/code_generation_lite/test6.jsonl]'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssd.config import ConfigError, is_int, require
from ssd.data.decontamination import EvalSetLoader, check_pool, check_record
from ssd.data.eval_sets import check_eval_sets
from ssd.data.prompts import load_pool
from ssd.tables import markdown_table

EXCERPT_CHARS = 160
ALL = "all sets"


def validate_decontaminate(cfg: DictConfig) -> list[str]:
    """The pool keys and the sets, checked; returns the sets."""
    require(cfg, "data.path", lambda v: isinstance(v, str) and (v.startswith("hub:")
                                                                or Path(v).is_file()),
            "an existing .json/.jsonl prompt pool (or hub:<dataset id>)")
    require(cfg, "data.field", lambda v: isinstance(v, str) and v != "",
            "the name of the problem-statement field")
    require(cfg, "decontaminate.examples", lambda v: is_int(v) and v >= 0,
            "an integer >= 0 (overlapping prompts printed per set)")
    sets = check_eval_sets(cfg, "decontaminate.sets")
    if not sets:
        raise ConfigError("decontaminate.sets=[]: name at least one conf/eval preset or "
                          "benchmark file, e.g. '[lcb_offline_2408_2501]'")
    return sets


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS - 3] + "..."


def run_decontaminate(cfg: DictConfig, eval_sets: EvalSetLoader | None) -> dict[str, Any]:
    """Check the whole pool (data.limit belongs to the tokens command) against each set and
    against all of them; print a table and examples; return the payload."""
    sets = validate_decontaminate(cfg)
    if eval_sets is None:
        raise ValueError("command=decontaminate needs the evaluation sets' loader "
                         "(analyze.py passes ssd.evaluation.eval_set_problems)")
    pool = load_pool(cfg.data.path, cfg.data.field, None, cfg.data.get("hub_config"),
                     cfg.data.get("hub_split", "train"))
    statements = {p.prompt_id: p.statement for p in pool.prompts}
    problems = {}
    for spec in sets:
        try:
            problems[spec] = eval_sets(spec)
        except ConfigError as error:
            raise ConfigError(f"decontaminate.sets: {spec} cannot be loaded ({error}); a hub "
                              "preset reads a local copy as <preset>:<file>") from None
    texts = {(p.benchmark, p.question_id): p.statement for ps in problems.values() for p in ps}
    scopes = {spec: [spec] for spec in sets} | ({ALL: sets} if len(sets) > 1 else {})
    report: dict[str, Any] = {"pool": {"path": cfg.data.path, "field": cfg.data.field,
                                       "prompts": len(pool.prompts)}, "sets": {}}
    print(f"decontaminate: {len(pool.prompts)} prompts of {cfg.data.path} "
          f"(field {cfg.data.field})")
    table = []
    for scope, members in scopes.items():
        chosen = [p for spec in members for p in problems[spec]]
        record = check_record(check_pool(pool.prompts, chosen), members)
        record["problems"] = len(chosen)
        report["sets"][scope] = record
        hit = sum(record["problems_hit"].values())
        table.append([scope, len(chosen), record["shares_any_ngram"], record["overlapping"],
                      hit])
    print(markdown_table(["set", "problems", "prompts sharing any 8-gram",
                          "overlapping prompts", "problems hit"], table))
    for scope in sets:
        strongest = sorted(report["sets"][scope]["overlaps"],
                           key=lambda o: -o["matches"][0]["shared"])
        shown = strongest[: cfg.decontaminate.examples]
        if shown:
            print(f"\nexamples, {scope} (strongest first):")
        for overlap in shown:
            match = overlap["matches"][0]
            print(f"- prompt {overlap['prompt_id']}: {_excerpt(statements[overlap['prompt_id']])}"
                  f"\n  {match['question_id']} ({match['shared']} 8-grams, e.g. "
                  f"\"{match['example']}\"): "
                  f"{_excerpt(texts[(match['benchmark'], match['question_id'])])}")
    return report
