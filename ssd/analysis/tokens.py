"""Token-distribution evidence on real models (Section 4.2, Figure 6; Appendix B.4, Eq. 30).

Why: the paper's real-model claim is that SSD (a) leaves less mass in diffuse distractor tails
before decoding starts (6a) and (b) gives evaluation-time temperature more to act on: under the
same (T_eval, top-k, top-p) more tokens survive truncation (6b) and the truncated distribution is
more spread out (6c), even at contexts where both models put the same mass in their top 20
tokens (6d). Appendix B.4 explains it with the gate/head/tail split of the full entropy over the
retained support S (Eq. 30). This module measures all of it at the *same* contexts for a base
model and an SSD model: both are teacher-forced on one set of continuations, so every difference
is a difference between the models, not between the texts they happened to write.

Definitions, per context s (all float64; every truncation goes through ``ssd.decoding.decode``):

- **Cumulative mass by rank (6a):** C_m(r) = Σ_{i≤r} p_m,(i), the top-r mass of the raw (T = 1)
  next-token distribution of model m, for r = 1..``ranks``.
- **Survivors (6b) and entropy after truncation (6c):** for each T_eval on the grid,
  |S_eval(T_eval)| and H(q_S) with (S_eval, q_S) = decode(z_m, T_eval, top-k, top-p) under the
  evaluation truncation.
- **Entropy at matched top-20 mass (6d):** the 6c curve restricted to the contexts where the two
  models' top-k mass (k = ``matched_k`` = 20, raw distributions, i.e. 6a at rank 20) agrees within
  ``matched_tolerance``. The caption says the higher post-truncation entropy "persists even when
  the two models place similar probability mass in their top 20 tokens"; conditioning on the same
  context *and* the same top-20 mass removes the obvious confound that SSD simply moved mass
  into its top 20. As a second, unpaired view, contexts are also binned by each model's own
  top-20 mass and the post-truncation entropy at one reference T is averaged per bin.
- **Gate/head/tail entropy (Eq. 30):** H(p_m) = h_b(K) + K·H(p_m(·|S)) + (1-K)·H(u_m), with
  S = S_s the *base* model's training-time retained support (Eq. 6: decode(z_base, T_train,
  top-k_train, top-p_train)) and K = KeptMass_m(S). Both models are decomposed over the same S_s,
  as in the paper, where S_s is the teacher's.
- **Lock-like vs fork-like:** |S_s| ≤ ``lock_max_support`` (default 1: the base model's
  training-time decoding keeps a single token) is lock-like; larger supports are fork-like. The
  split is a property of the context and the base model, so both models are compared on exactly
  the same contexts in each split.

The measures are pure functions of logits; model loading, continuation sampling, forward passes
and the ``plot_*`` functions are the I/O edge at the bottom of the module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssd.analysis import single_thread, theory
from ssd.decoding import decode
from ssd.plotting import pyplot, save_figure
from ssd.tables import markdown_table

SPLITS = ("all", "lock", "fork")
MODELS = ("base", "ssd")
DEFAULT_MASS_BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Contexts measured per batch: bounds the float64 [rows, V] temporaries of the decoder (sorts,
# masks) to a few hundred MB even for a 150k vocabulary and long continuations.
ROWS_PER_CHUNK = 128
# The paper's colours for Figure 6: amber for the base model, blue after SSD.
COLORS = {"base": "#E69F00", "ssd": "#1F77B4"}


@dataclass(frozen=True)
class TokenSettings:
    """Every knob of the measures; the defaults disable truncation."""

    t_grid: tuple[float, ...]  # evaluation temperatures for 6b-6d
    top_k: int = 0  # evaluation truncation (0 disables)
    top_p: float = 1.0
    min_p: float = 0.0
    support_t: float = 1.0  # training-time decoding that defines S_s (Eq. 6)
    support_top_k: int = 0
    support_top_p: float = 1.0
    ranks: int = 20  # 6a: cumulative mass at ranks 1..ranks
    lock_max_support: int = 1  # |S_s| <= this is lock-like
    matched_k: int = 20  # 6d: "mass in their top 20 tokens"
    matched_tolerance: float = 0.02  # |top-20 mass difference| that counts as matched
    matched_t: float = 1.0  # T_eval of the binned 6d view (nearest t_grid value)
    matched_bins: tuple[float, ...] = DEFAULT_MASS_BINS


# --------------------------------------------------------------------------------------------
# Pure measures on a batch of contexts: logits [n, V] -> per-context numbers
# --------------------------------------------------------------------------------------------


def cumulative_mass_by_rank(logits: torch.Tensor, ranks: int) -> np.ndarray:
    """C(r) = mass of the r most probable tokens, r = 1..ranks (6a), shape [n, ranks]."""
    probs = logits.double().softmax(dim=-1)
    top = probs.topk(min(ranks, probs.shape[-1]), dim=-1).values
    return top.cumsum(dim=-1).numpy()


def top_mass(logits: torch.Tensor, k: int) -> np.ndarray:
    """Mass of the k most probable tokens of the raw distribution (6d's matching key), [n]."""
    return cumulative_mass_by_rank(logits, k)[:, -1]


def truncation_response(
    logits: torch.Tensor,
    t_grid: Sequence[float],
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """|S_eval(T)| (6b) and H(q_S) in nats (6c) at each T of ``t_grid``: two arrays [n, len(grid)].

    Each T is one call of the project's decoder, so the survivors are exactly the tokens vLLM
    could sample under (T, top-k, top-p, min-p).
    """
    z = logits.double()
    sizes, entropies = [], []
    with single_thread():
        for t in t_grid:
            out = decode(z, float(t), top_k=top_k, top_p=top_p, min_p=min_p)
            sizes.append(out.support_size.numpy())
            entropies.append(theory.entropy(out.probs.numpy()))
    return np.stack(sizes, axis=-1), np.stack(entropies, axis=-1)


def retained_support(logits: torch.Tensor, t: float, top_k: int = 0, top_p: float = 1.0
                     ) -> np.ndarray:
    """S_s = TopP(TopK(Temper_T[p], k), top-p) (Eq. 6) as a bool array [n, V]."""
    return decode(logits.double(), float(t), top_k=top_k, top_p=top_p).support.numpy()


def entropy_terms(logits: torch.Tensor, support: np.ndarray) -> np.ndarray:
    """Eq. 30 per context: columns (gate, head, tail, kept mass K, H(p)), shape [n, 5].

    Each row is ``theory.entropy_decomposition`` (the project's one statement of Eq. 30); H(p) is
    computed independently so the identity gate + head + tail = H(p) can be checked on real data.
    """
    probs = logits.double().softmax(dim=-1).numpy()
    rows = []
    for p, s in zip(probs, support, strict=True):
        terms = theory.entropy_decomposition(p, s)
        rows.append((terms.gate, terms.head, terms.tail, float(theory.kept_mass(p, s)),
                     float(theory.entropy(p))))
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


@dataclass(frozen=True)
class ContextMeasures:
    """One model's per-context numbers; row i of every array is context i."""

    cumulative_mass: np.ndarray  # [n, ranks] (6a)
    support_size: np.ndarray  # [n, n_T] survivors of evaluation truncation (6b)
    truncated_entropy: np.ndarray  # [n, n_T] H(q_S) (6c, 6d)
    top_mass: np.ndarray  # [n] raw top-``matched_k`` mass (6d's matching key)
    entropy_terms: np.ndarray  # [n, 5] gate, head, tail, kept mass, H(p) (Eq. 30)

    @property
    def n(self) -> int:
        return int(self.top_mass.shape[0])


def measure_contexts(logits: torch.Tensor, support: np.ndarray, settings: TokenSettings
                     ) -> ContextMeasures:
    """All per-context measures of one model, given S_s (the base model's retained support)."""
    sizes, entropies = truncation_response(
        logits, settings.t_grid, settings.top_k, settings.top_p, settings.min_p
    )
    return ContextMeasures(
        cumulative_mass=cumulative_mass_by_rank(logits, settings.ranks),
        support_size=sizes,
        truncated_entropy=entropies,
        top_mass=top_mass(logits, settings.matched_k),
        entropy_terms=entropy_terms(logits, support),
    )


def concat_measures(parts: Sequence[ContextMeasures]) -> ContextMeasures:
    """Stack the contexts of several prompts (measured prompt by prompt to bound memory)."""
    return ContextMeasures(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(
            ContextMeasures)}
    )


def split_masks(support_size: np.ndarray, lock_max_support: int = 1) -> dict[str, np.ndarray]:
    """Lock-like (|S_s| <= threshold) and fork-like (larger) contexts, plus all of them."""
    size = np.asarray(support_size)
    lock = size <= lock_max_support
    return {"all": np.ones(size.shape, dtype=bool), "lock": lock, "fork": ~lock}


def matched_mask(base: ContextMeasures, ssd: ContextMeasures, tolerance: float) -> np.ndarray:
    """Contexts where the two models' top-k masses agree within ``tolerance`` (6d)."""
    return np.abs(base.top_mass - ssd.top_mass) <= tolerance


def _mean(values: np.ndarray, mask: np.ndarray) -> Any:
    """Mean over the masked contexts (axis 0): a float or a list; NaN when no context is left."""
    chosen = values[mask]
    out = np.full(values.shape[1:], math.nan) if chosen.shape[0] == 0 else chosen.mean(axis=0)
    return float(out) if np.ndim(out) == 0 else [float(v) for v in out]


def _median(values: np.ndarray, mask: np.ndarray) -> Any:
    chosen = values[mask]
    if chosen.shape[0] == 0:
        return [math.nan] * values.shape[1]
    return [float(v) for v in np.median(chosen, axis=0)]


def model_summary(m: ContextMeasures, mask: np.ndarray, matched: np.ndarray) -> dict[str, Any]:
    """Means of every measure over the contexts in ``mask`` (6d: over ``mask & matched``)."""
    gate, head, tail, kept, total = (m.entropy_terms[:, i] for i in range(5))
    return {
        "cumulative_mass": _mean(m.cumulative_mass, mask),
        "support_size_mean": _mean(m.support_size.astype(np.float64), mask),
        "support_size_median": _median(m.support_size.astype(np.float64), mask),
        "singleton_fraction": _mean((m.support_size == 1).astype(np.float64), mask),
        "entropy_after_truncation": _mean(m.truncated_entropy, mask),
        "top_mass": _mean(m.top_mass, mask),
        "matched_entropy_after_truncation": _mean(m.truncated_entropy, mask & matched),
        "entropy_decomposition": {
            "entropy": _mean(total, mask),
            "gate": _mean(gate, mask),
            "head": _mean(head, mask),
            "tail": _mean(tail, mask),
            "kept_mass": _mean(kept, mask),
        },
    }


def mass_bins(
    base: ContextMeasures,
    ssd: ContextMeasures,
    mask: np.ndarray,
    edges: Sequence[float],
    t_index: int,
) -> list[dict[str, Any]]:
    """The unpaired 6d view: entropy after truncation at one T, binned by each model's own top-k
    mass. Bins are [lo, hi) except the last, which includes 1.0."""
    rows = []
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        row: dict[str, Any] = {"lo": float(lo), "hi": float(hi)}
        for name, m in (("base", base), ("ssd", ssd)):
            last = i == len(edges) - 2
            mass = np.clip(m.top_mass, 0.0, 1.0)  # a float64 sum can land a hair above 1
            inside = (mass >= lo) & ((mass <= hi) if last else (mass < hi))
            chosen = mask & inside
            row[name] = {
                "n": int(chosen.sum()),
                "top_mass": _mean(m.top_mass, chosen),
                "entropy_after_truncation": _mean(m.truncated_entropy[:, t_index], chosen),
            }
        rows.append(row)
    return rows


def summarise(
    base: ContextMeasures,
    ssd: ContextMeasures,
    support_size: np.ndarray,
    settings: TokenSettings,
) -> dict[str, Any]:
    """Every measure for each split (all / lock-like / fork-like) and each model, as plain data."""
    if base.n != ssd.n or base.n != len(support_size):
        raise ValueError("base, ssd and support_size must describe the same contexts")
    splits = split_masks(support_size, settings.lock_max_support)
    matched = matched_mask(base, ssd, settings.matched_tolerance)
    t_index = int(np.argmin(np.abs(np.asarray(settings.t_grid) - settings.matched_t)))
    decomposition_error = float(np.max(np.abs(
        np.concatenate([m.entropy_terms[:, :3].sum(axis=1) - m.entropy_terms[:, 4]
                        for m in (base, ssd)])), initial=0.0))
    out: dict[str, Any] = {
        "t_grid": [float(t) for t in settings.t_grid],
        "ranks": list(range(1, base.cumulative_mass.shape[1] + 1)),
        "n_contexts": base.n,
        "decomposition_max_abs_error": decomposition_error,
        "splits": {},
    }
    for name in SPLITS:
        mask = splits[name]
        out["splits"][name] = {
            "n": int(mask.sum()),
            "support_s_mean": _mean(support_size.astype(np.float64), mask),
            "base": model_summary(base, mask, matched),
            "ssd": model_summary(ssd, mask, matched),
            "matched": {"n": int((mask & matched).sum()), "k": settings.matched_k,
                        "tolerance": settings.matched_tolerance},
            "mass_bins": {"t_eval": float(settings.t_grid[t_index]),
                          "bins": mass_bins(base, ssd, mask, settings.matched_bins, t_index)},
        }
    return out


def format_summary(summary: dict[str, Any], settings: TokenSettings) -> str:
    """A Markdown table of the key numbers: per split and model, at the grid's ends and T_ref."""
    grid = summary["t_grid"]
    ref = summary["splits"]["all"]["mass_bins"]["t_eval"]
    cols = sorted({0, grid.index(ref), len(grid) - 1})
    temps = "/".join(f"{grid[i]:g}" for i in cols)

    def num(value: Any, spec: str = ".3f") -> str:
        return "-" if value is None or not math.isfinite(value) else format(value, spec)

    header = ["split", "n", "model", "mass@1", f"mass@{settings.ranks}", f"survivors T={temps}",
              f"H_trunc T={temps}", "matched n", f"H_trunc matched T={ref:g}", "gate", "head",
              "tail", "H(p)", "K"]
    rows = []
    for split in SPLITS:
        data = summary["splits"][split]
        for model in MODELS:
            m = data[model]
            e = m["entropy_decomposition"]
            rows.append([split, data["n"], model, num(m["cumulative_mass"][0]),
                         num(m["cumulative_mass"][-1]),
                         "/".join(num(m["support_size_mean"][i], ".2f") for i in cols),
                         "/".join(num(m["entropy_after_truncation"][i]) for i in cols),
                         data["matched"]["n"],
                         num(m["matched_entropy_after_truncation"][grid.index(ref)]),
                         num(e["gate"]), num(e["head"]), num(e["tail"]), num(e["entropy"]),
                         num(e["kept_mass"])])
    return markdown_table(header, rows)


def context_rows(base: ContextMeasures, ssd: ContextMeasures, support_size: np.ndarray,
                 labels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per context (for contexts.jsonl): its label plus both models' numbers."""
    rows = []
    for i, label in enumerate(labels):
        row = {**label, "support_s": int(support_size[i])}
        for name, m in (("base", base), ("ssd", ssd)):
            gate, head, tail, kept, total = (float(v) for v in m.entropy_terms[i])
            row[name] = {
                "top1": float(m.cumulative_mass[i, 0]), "top_mass": float(m.top_mass[i]),
                "support_size": [int(v) for v in m.support_size[i]],
                "entropy_after_truncation": [float(v) for v in m.truncated_entropy[i]],
                "entropy": total, "gate": gate, "head": head, "tail": tail, "kept_mass": kept,
            }
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# The I/O edge: models, continuations, teacher-forced forward passes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Continuation:
    """One teacher-forced text: the chat prompt's token ids and the continuation's."""

    prompt_id: str
    prompt_ids: tuple[int, ...]
    continuation_ids: tuple[int, ...]


def load_causal_lm(path: str, dtype: str = "float32") -> Any:
    """An HF causal LM in eval mode (``path`` already resolved by ``resolve_model_path``)."""
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval()


@torch.no_grad()
def sample_continuation(
    model: Any,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    t: float,
    top_k: int,
    top_p: float,
    seed: int,
    stop_ids: Iterable[int] = (),
) -> list[int]:
    """Sample up to ``max_new_tokens`` tokens from q_S = decode(z, T, top-k, top-p) with a KV cache.

    A hand loop rather than ``generate`` so that the sampled tokens come from the project's own
    decoder (the same S and q_S the analysis measures) and from a private seeded generator, not
    from torch's global RNG.
    """
    generator = torch.Generator().manual_seed(int(seed))
    stops = set(stop_ids)
    ids = torch.tensor([list(prompt_ids)])
    past = None
    out: list[int] = []
    with single_thread():
        for _ in range(max_new_tokens):
            result = model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
            past = result.past_key_values
            q = decode(result.logits[0, -1].double(), t, top_k=top_k, top_p=top_p).probs
            token = int(torch.multinomial(q, 1, generator=generator))
            out.append(token)
            if token in stops:
                break
            ids = torch.tensor([[token]])
    return out


@torch.no_grad()
def next_token_logits(model: Any, item: Continuation) -> torch.Tensor:
    """Teacher-forced float64 logits [C, V]: row j is the distribution that predicts token j.

    The input is prompt + continuation[:-1], so the last C positions are exactly the C contexts
    (prompt, y_<j); only those positions' logits are materialised.
    """
    n = len(item.continuation_ids)
    ids = torch.tensor([list(item.prompt_ids) + list(item.continuation_ids[:-1])])
    return model(input_ids=ids, logits_to_keep=n).logits[0, -n:].double()


def analyse_continuations(
    base_model: Any,
    ssd_model: Any,
    items: Sequence[Continuation],
    settings: TokenSettings,
) -> tuple[ContextMeasures, ContextMeasures, np.ndarray, list[dict[str, Any]]]:
    """Run both models over the same continuations and measure every context.

    Returns (base measures, ssd measures, |S_s| per context, one label per context). Prompts are
    processed one at a time so only one prompt's [C, V] logits are alive at once. Forward passes
    run on one torch thread: on a shared CPU the thread pool's synchronisation costs far more than
    it saves at batch size 1 (measured here: 3x-10x slower with 2 threads under load; see
    ``ssd.analysis.single_thread``).
    """
    base_parts, ssd_parts, sizes, labels = [], [], [], []
    for item in items:
        if not item.continuation_ids:
            continue
        with single_thread():
            z_base = next_token_logits(base_model, item)
            z_ssd = z_base if ssd_model is base_model else next_token_logits(ssd_model, item)
        if z_base.shape != z_ssd.shape:
            raise ValueError(
                f"ssd.path: vocabulary size {z_ssd.shape[-1]} differs from base.path's "
                f"{z_base.shape[-1]}; the two models must share a tokenizer"
            )
        for start in range(0, z_base.shape[0], ROWS_PER_CHUNK):
            rows = slice(start, start + ROWS_PER_CHUNK)
            support = retained_support(z_base[rows], settings.support_t, settings.support_top_k,
                                       settings.support_top_p)
            base_parts.append(measure_contexts(z_base[rows], support, settings))
            ssd_parts.append(measure_contexts(z_ssd[rows], support, settings))
            sizes.append(support.sum(axis=-1))
        labels += [{"prompt_id": item.prompt_id, "position": j, "token": int(tok)}
                   for j, tok in enumerate(item.continuation_ids)]
    if not base_parts:
        raise ValueError("no continuation tokens to analyse")
    return concat_measures(base_parts), concat_measures(ssd_parts), np.concatenate(sizes), labels


# --------------------------------------------------------------------------------------------
# Plots (the only file-system writes in this module)
# --------------------------------------------------------------------------------------------


def _nan_list(values: Any) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in np.atleast_1d(values)], dtype=float)


def plot_tokens(summary: dict[str, Any], path: str | Path) -> Path:
    """Figure 6 for every split: rows all / lock-like / fork-like, columns (a)-(d)."""
    plt = pyplot()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    t_grid, ranks = summary["t_grid"], summary["ranks"]
    fig, axes = plt.subplots(len(SPLITS), 4, figsize=(17, 10.5), constrained_layout=True,
                             squeeze=False)
    for row, split in enumerate(SPLITS):
        data = summary["splits"][split]
        panels = (
            (ranks, "cumulative_mass", "rank", "cumulative mass", "(a) mass by rank"),
            (t_grid, "support_size_mean", "T_eval", "tokens surviving truncation",
             "(b) survivors"),
            (t_grid, "entropy_after_truncation", "T_eval", "entropy after truncation (nats)",
             "(c) entropy after truncation"),
            (t_grid, "matched_entropy_after_truncation", "T_eval",
             "entropy after truncation (nats)",
             f"(d) matched top-{data['matched']['k']} mass (n={data['matched']['n']})"),
        )
        for col, (x, key, xlabel, ylabel, title) in enumerate(panels):
            ax = axes[row, col]
            ax.set_title(f"{split} (n={data['n']}): {title}", fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel, fontsize=8)
            if np.all(np.isnan(_nan_list(data["base"][key]))):
                ax.text(0.5, 0.5, "no contexts", ha="center", va="center",
                        transform=ax.transAxes, color="gray")
                continue
            for model in MODELS:
                ax.plot(x, _nan_list(data[model][key]), marker="o", markersize=3,
                        color=COLORS[model], label=model)
            if key == "support_size_mean":  # 1 to hundreds of survivors: log axis, plain labels
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def plot_entropy_decomposition(summary: dict[str, Any], path: str | Path) -> Path:
    """Eq. 30 as stacked bars (gate, head, tail) per split and model."""
    plt = pyplot()

    labels, stacks = [], {"gate": [], "head": [], "tail": []}
    for split in SPLITS:
        for model in MODELS:
            terms = summary["splits"][split][model]["entropy_decomposition"]
            labels.append(f"{split}\n{model}")
            for key in stacks:
                value = terms[key]
                stacks[key].append(math.nan if value is None else value)
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for key, color in zip(stacks, ("#999999", "#1F77B4", "#E69F00"), strict=True):
        heights = np.nan_to_num(np.array(stacks[key]))
        ax.bar(x, heights, bottom=bottom, color=color, label=key)
        bottom += heights
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("mean entropy (nats)")
    ax.set_title("Eq. 30: H(p) = gate + head + tail over the base model's retained support S_s")
    ax.legend()
    return save_figure(fig, path, dpi=110)
