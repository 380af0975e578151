"""Lab worlds: prompt-conditioned lock/fork state machines whose answer is known exactly (pure).

A world is the paper's Appendix C.4 toy made into a language: a vocabulary of world tokens
``t0 .. t{V-1}``, a set of prompts, and for each prompt a path of ``depth`` positions. Position d
of prompt p follows one *archetype* (root, fork, lock: a next-token distribution over roles, Table
6's head plus a geometric tail) with its roles mapped onto tokens by a per-position shift, so
where the locks and forks are, and which token is correct, can depend on the prompt. A completion
is exactly ``depth`` world tokens and then the end-of-turn token; it succeeds when every token is
one of its position's success roles (root: tok0 or tok1, fork and lock: tok0).

The teacher's next-token distribution depends only on (prompt, position): after a wrong token the
continuation follows the same archetypes, it just cannot succeed any more. After ``depth`` tokens
the teacher ends the turn with probability 1. The success probability of any model under any
decoding is therefore a sum over the success paths of products of its decoded probabilities at
the states along them, which ``path_success`` computes for the teacher, the ideal SSD student and
(from their vLLM logprobs) the learned models alike.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SUM_TOLERANCE = 1e-6  # how far a configured probability row may be from summing to 1
# The lab model's special tokens (ssd.lab.base); world tokens are t0 .. t{V-1}.
RESERVED_WORDS = ("<|pad|>", "<|user|>", "<|assistant|>", "<|end|>")
WORLD_FORMAT = 1  # bump when what a world means changes: part of every digest below


class WorldError(ValueError):
    """A lab world value is invalid; the message names the key and the fix."""


@dataclass(frozen=True, eq=False)
class Archetype:
    """A state kind: its next-token distribution over roles and the roles that succeed."""

    name: str
    probs: np.ndarray  # float64 [V], in role order, sums to 1
    success: tuple[int, ...]


@dataclass(frozen=True)
class Position:
    archetype: str
    shift: int  # role r is token (r + shift) mod V


@dataclass(frozen=True)
class WorldPrompt:
    text: str
    positions: tuple[Position, ...]


@dataclass(frozen=True, eq=False)
class World:
    name: str
    vocab_size: int
    archetypes: dict[str, Archetype]
    prompts: tuple[WorldPrompt, ...]
    depth: int

    def token(self, role: int, position: Position) -> int:
        return (role + position.shift) % self.vocab_size

    def teacher_row(self, prompt: int, depth: int) -> np.ndarray:
        """The teacher's distribution over world tokens at position ``depth`` of ``prompt``."""
        position = self.prompts[prompt].positions[depth]
        return np.roll(self.archetypes[position.archetype].probs, position.shift)

    def success_paths(self, prompt: int) -> list[tuple[int, ...]]:
        """Every successful completion of ``prompt`` (world token indices, end of turn implied)."""
        choices = [[self.token(r, pos) for r in self.archetypes[pos.archetype].success]
                   for pos in self.prompts[prompt].positions]
        return [tuple(path) for path in itertools.product(*choices)]

    def digest(self) -> str:
        """Content identity of the world (what the fitted base and every stage depend on)."""
        payload = {"format": WORLD_FORMAT, "vocab_size": self.vocab_size,
                   "archetypes": {n: [a.probs.tolist(), list(a.success)]
                                  for n, a in sorted(self.archetypes.items())},
                   "prompts": [[p.text, [[q.archetype, q.shift] for q in p.positions]]
                               for p in self.prompts]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# -- building a world from config -----------------------------------------------------------
def geometric_tail(residual: float, length: int, ratio: float) -> np.ndarray:
    """``length`` masses proportional to ``ratio**i`` that sum exactly to ``residual``."""
    weights = ratio ** np.arange(length, dtype=np.float64)
    return residual * weights / weights.sum()


def _archetype(name: str, spec: dict[str, Any], vocab_size: int, key: str) -> Archetype:
    success = spec.get("success")
    if not isinstance(success, list | tuple) or not success:
        raise WorldError(f"{key}.success={success}: a world with no success path; list the "
                         "roles that succeed at this state, e.g. [0]")
    if len(set(success)) != len(success):
        raise WorldError(f"{key}.success={list(success)}: list each role once")
    if any(not isinstance(r, int) or not 0 <= r < vocab_size for r in success):
        raise WorldError(f"{key}.success={list(success)}: roles are integers in "
                         f"[0, {vocab_size - 1}]")
    if spec.get("probs") is not None:
        probs = np.asarray(spec["probs"], dtype=np.float64)
        if probs.shape != (vocab_size,):
            raise WorldError(f"{key}.probs: {probs.size} values; give one per world token "
                             f"({vocab_size}), or a head with tail_ratio")
        if (probs < 0).any() or abs(probs.sum() - 1.0) > SUM_TOLERANCE:
            raise WorldError(f"{key}.probs sums to {probs.sum():.6g}; a probability row must "
                             "be non-negative and sum to 1")
    else:
        head = np.asarray(spec.get("head") or [], dtype=np.float64)
        ratio = spec.get("tail_ratio")
        if head.size == 0 or head.size >= vocab_size or (head <= 0).any():
            raise WorldError(f"{key}.head={head.tolist()}: 1 to {vocab_size - 1} positive "
                             "probabilities (or give probs: the whole row)")
        if head.sum() >= 1.0:
            raise WorldError(f"{key}.head sums to {head.sum():.6g}; it must leave mass (< 1) "
                             "for the geometric tail")
        if not isinstance(ratio, int | float) or not 0 < ratio <= 1:
            raise WorldError(f"{key}.tail_ratio={ratio}: a ratio in (0, 1]")
        probs = np.concatenate([head, geometric_tail(1.0 - head.sum(), vocab_size - head.size,
                                                     float(ratio))])
    return Archetype(name, probs, tuple(int(r) for r in success))


def build_world(spec: dict[str, Any], key: str = "lab") -> World:
    """A ``World`` from the ``lab`` config group's ``world`` block; one-line errors name the key."""
    vocab = spec.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 2:
        raise WorldError(f"{key}.vocab_size={vocab}: an integer >= 2 (world tokens)")
    specs = spec.get("archetypes") or {}
    if not specs:
        raise WorldError(f"{key}.archetypes: empty; define root/fork/lock-like states")
    archetypes = {name: _archetype(name, dict(s), vocab, f"{key}.archetypes.{name}")
                  for name, s in specs.items()}
    prompts = []
    depth = None
    for i, p in enumerate(spec.get("prompts") or []):
        where = f"{key}.prompts[{i}]"
        layout, shifts = list(p.get("layout") or []), p.get("shift", 0)
        shifts = list(shifts) if isinstance(shifts, list | tuple) else [shifts] * len(layout)
        unknown = [a for a in layout if a not in archetypes]
        if not layout or unknown:
            raise WorldError(f"{where}.layout={layout}: a non-empty list of archetype names "
                             f"({', '.join(archetypes)})")
        if len(shifts) != len(layout) or any(not isinstance(s, int) for s in shifts):
            raise WorldError(f"{where}.shift: one integer, or one per layout position "
                             f"({len(layout)})")
        if depth is not None and len(layout) != depth:
            raise WorldError(f"{where}.layout: {len(layout)} positions; every prompt of a world "
                             f"has the same depth ({depth})")
        depth = len(layout)
        text = str(p.get("text") or f"p{i}")
        if len(text.split()) != 1:
            raise WorldError(f"{where}.text={text!r}: one word (it is one token of the lab model)")
        if text in RESERVED_WORDS or (re.fullmatch(r"t\d+", text) and int(text[1:]) < vocab):
            raise WorldError(f"{where}.text={text!r}: a reserved token (world tokens t<i>, "
                             "<|...|> specials); choose another word")
        prompts.append(WorldPrompt(text, tuple(Position(a, s % vocab)
                                               for a, s in zip(layout, shifts, strict=True))))
    if not prompts:
        raise WorldError(f"{key}.prompts: empty; give at least one prompt layout")
    if len({p.text for p in prompts}) != len(prompts):
        raise WorldError(f"{key}.prompts: two prompts share a text; texts must differ")
    assert depth is not None
    return World(str(spec.get("name", "world")), vocab, archetypes, tuple(prompts), depth)


# -- success under a decoding ---------------------------------------------------------------
def path_success(rows: np.ndarray, paths: Sequence[Sequence[tuple[int, int]]]) -> np.ndarray:
    """Σ over paths of Π q[state, token] for decoded rows ``q[..., S, V]``.

    A path is a list of (state row, token) steps; the end-of-turn step is one of them for learned
    models (for the world's own models it has probability 1 and is left out)."""
    total = np.zeros(rows.shape[:-2])
    for path in paths:
        term = np.ones(rows.shape[:-2])
        for state, token in path:
            term = term * rows[..., state, token]
        total = total + term
    return total


def world_states(world: World, prompt: int) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """The teacher rows of ``prompt``'s positions and its success paths as (row, token) steps."""
    rows = np.stack([world.teacher_row(prompt, d) for d in range(world.depth)])
    paths = [[(d, token) for d, token in enumerate(path)] for path in world.success_paths(prompt)]
    return rows, paths
