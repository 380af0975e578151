"""The problems of an evaluation set named outside evaluate.py (generate's ``data.decontaminate``,
analyze's ``decontaminate.sets``), loaded exactly as evaluate.py loads them: the same formats,
problem sets and limit. Handed to those stages by their entry scripts (``ssd.data.eval_sets``)."""

from __future__ import annotations

from omegaconf import OmegaConf

from ssd.data.decontamination import EvalProblem
from ssd.data.eval_sets import eval_set_values
from ssd.evaluation.run import load_problems


def eval_set_problems(spec: str) -> list[EvalProblem]:
    """A conf/eval preset's (or a benchmark file's) problems with their statements; a set that
    cannot be loaded raises ConfigError naming its eval.path."""
    problems, _ = load_problems(OmegaConf.create({"eval": eval_set_values(spec)}))
    return [EvalProblem(spec, p.question_id, p.content) for p in problems]
