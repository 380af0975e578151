"""The SSD lab's mathematics: a lab world's models as path products, read exactly.

The lab (``lab.py``, ``ssd.pipeline.lab``) trains real models on a world whose answer is known;
this module holds what it computes with, as pure functions: the world's teacher as a path-product
model (``ToyModel``: one row per state, the success paths over them), a learned model's rows read
off vLLM as one, where to sample a model's best, the sampled gain's interval, how far the fitted
base is from the teacher, and what SSD did to each state's distribution (the sharpening).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssd.analysis.toy import ToyModel, find_optimum
from ssd.lab.base import END, world_token
from ssd.lab.world import World

# vLLM refuses temperatures above 2: the learned models' optima are sought, and the lab samples,
# within (0.1, 2]. The paper's toy is also solved on (0.1, 4] (its student peaks at T 2.094).
VLLM_MAX_T = 2.0
T_RANGE = (0.1, VLLM_MAX_T)
PAPER_T_RANGE = (0.1, 4.0)
# The sampled "best" point sits this far (relative) inside the piece its optimum ends: optima lie
# on nucleus breakpoints, where float32 and float64 may keep different nuclei.
BREAKPOINT_MARGIN = 0.005
Z95 = 1.959963984540054

def question_id(world: World, prompt: int) -> str:
    return f"{world.name}/{world.prompts[prompt].text}"


def answer_text(path: Sequence[int]) -> str:
    return " ".join(world_token(t) for t in path)


# -- models as path products (pure) -------------------------------------------------------------
def world_teacher(world: World) -> ToyModel:
    """The world's teacher: one row per (prompt, position), its success paths over them."""
    rows, paths, names = [], [], []
    for p in range(len(world.prompts)):
        offset = len(rows)
        rows += [world.teacher_row(p, d) for d in range(world.depth)]
        names += [f"{world.prompts[p].text}@{d}" for d in range(world.depth)]
        paths += [tuple((offset + d, t) for d, t in enumerate(path))
                  for path in world.success_paths(p)]
    return ToyModel("teacher", np.stack(rows), tuple(paths), tuple(names),
                    1.0 / len(world.prompts))


def learned_model(name: str, world: World, rows: Mapping[tuple[int, tuple[int, ...]], Any],
                  vocab: Sequence[str]) -> ToyModel:
    """A learned model's rows at the success-path states, its paths ending in end-of-turn."""
    keys = sorted(rows)
    index = {key: i for i, key in enumerate(keys)}
    token = {t: vocab.index(world_token(t)) for t in range(world.vocab_size)}
    end = vocab.index(END)
    paths = []
    for p in range(len(world.prompts)):
        for path in world.success_paths(p):
            steps = [(index[(p, path[:d])], token[t]) for d, t in enumerate(path)]
            paths.append((*steps, (index[(p, path)], end)))
    probs = np.stack([np.asarray(rows[k], dtype=np.float64) for k in keys])
    probs = probs / probs.sum(axis=-1, keepdims=True)
    names = tuple(f"{world.prompts[p].text}:{answer_text(prefix) or '-'}" for p, prefix in keys)
    return ToyModel(name, probs, tuple(paths), names, 1.0 / len(world.prompts))


def rows_from_record(world: World, record: Mapping[str, Any]
                     ) -> tuple[dict[tuple[int, tuple[int, ...]], list[float]], list[str]]:
    """The raw rows evaluate.py read off vLLM (its metrics' ``exact`` block), keyed as above."""
    exact = record["exact"]
    rows = {}
    for p in range(len(world.prompts)):
        for state in exact["problems"][question_id(world, p)]["states"]:
            prefix = tuple(int(w[1:]) for w in state["prefix"].split())
            rows[(p, prefix)] = state["raw"]
    return rows, exact["vocab"]


def planned_temperature(model: ToyModel, top_p: float) -> float:
    """Where to sample a model's best: its exact optimum, moved inside its own piece."""
    optimum = find_optimum(model, top_p, T_RANGE)
    if optimum.approach == "from_below":
        return round(optimum.temperature * (1 - BREAKPOINT_MARGIN), 4)
    if optimum.approach == "from_above":
        return round(optimum.temperature * (1 + BREAKPOINT_MARGIN), 4)
    return round(optimum.temperature, 4)


# -- statistics (pure) --------------------------------------------------------------------------
def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def gain_interval(p_ssd: float, n_ssd: int, p_base: float, n_base: int) -> dict[str, float]:
    """SSD minus base from two independent sample sets: estimate, SE, 95% Wald interval."""
    se = math.sqrt(binomial_se(p_ssd, n_ssd) ** 2 + binomial_se(p_base, n_base) ** 2)
    gain = p_ssd - p_base
    return {"gain": gain, "se": se, "low": gain - Z95 * se, "high": gain + Z95 * se}


def fit_errors(world: World, base: ToyModel, rows_keys: Sequence[tuple[int, tuple[int, ...]]],
               vocab: Sequence[str]) -> dict[str, float]:
    """How far the fitted base is from the teacher at the success-path states: the largest
    difference on each state's four most likely world tokens, on any world token, and the
    end-of-turn mass where the teacher ends (1 - q(end))."""
    token_ids = [vocab.index(world_token(t)) for t in range(world.vocab_size)]
    end = vocab.index(END)
    head = whole = eot = 0.0
    for i, (p, prefix) in enumerate(sorted(rows_keys)):
        row = base.probs[i]
        if len(prefix) == world.depth:
            eot = max(eot, 1.0 - row[end])
            continue
        teacher = world.teacher_row(p, len(prefix))
        diff = np.abs(row[token_ids] - teacher)
        head = max(head, float(diff[np.argsort(-teacher)[:4]].max()))
        whole = max(whole, float(diff.max()))
    return {"head": head, "any_token": whole, "end_of_turn": eot}


def optimum_record(model: ToyModel, top_p: float, t_range: tuple[float, float] = T_RANGE
             ) -> dict[str, Any]:
    optimum = find_optimum(model, top_p, t_range)
    return {"t": optimum.temperature, "p": optimum.success, "approach": optimum.approach}


def sharpening(world: World, lab: Mapping[str, Any], base: ToyModel, ssd: ToyModel,
               keys: Sequence[tuple[int, tuple[int, ...]]], vocab: Sequence[str]
               ) -> list[dict[str, Any]]:
    """Per prompt and position along the first success path: what SSD did to the raw
    distribution there (mass on the success tokens, mass on the tokens the training decoding
    cuts, entropy), so lock and fork positions can be told apart."""
    import torch

    from ssd.decoding import decode_probs

    ssd_values = lab["ssd"]
    token_ids = np.array([vocab.index(world_token(t)) for t in range(world.vocab_size)])
    index = {key: i for i, key in enumerate(sorted(keys))}
    rows = []
    for p, prompt in enumerate(world.prompts):
        path = world.success_paths(p)[0]
        for d, position in enumerate(prompt.positions):
            teacher = world.teacher_row(p, d)
            kept = decode_probs(torch.from_numpy(teacher), float(ssd_values["t_train"]),
                                top_k=int(ssd_values["top_k"]),
                                top_p=float(ssd_values["top_p"])).support.numpy()
            success = [world.token(r, position)
                       for r in world.archetypes[position.archetype].success]
            entry: dict[str, Any] = {"prompt": prompt.text, "position": d,
                                     "archetype": position.archetype,
                                     "teacher_success": float(teacher[success].sum()),
                                     "teacher_cut": float(teacher[~kept].sum())}
            for label, model in (("base", base), ("ssd", ssd)):
                row = model.probs[index[(p, path[:d])]][token_ids]
                nonzero = row[row > 0]
                entry[f"{label}_success"] = float(row[success].sum())
                entry[f"{label}_cut"] = float(row[~kept].sum())
                entry[f"{label}_entropy"] = float(-(nonzero * np.log(nonzero)).sum())
            rows.append(entry)
    return rows


