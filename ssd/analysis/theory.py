"""Appendix B's identities as pure float64 functions, so each can be checked numerically.

Why: the paper's mechanism story (support compression at locks, within-support reshaping at forks,
temperature composition, the limits of decode-only tuning) rests on a handful of exact identities.
Writing each one as a function of explicit distributions, with every decoding step delegated to
the project's reference decoder ``ssd.decoding``, lets the tests verify them to 1e-9 on random
distributions and ties the theory to the very operator the experiments run.

Notation (Appendix B.1). ``p0`` is the frozen teacher's next-token distribution at one context,
``p`` (p_θ) the student's; distributions are float64 numpy arrays over the last axis. For a
retained support S (a bool mask) and temperature T,

    Temper_T^S[p](v) = p(v)^{1/T} 1{v ∈ S} / Σ_{u∈S} p(u)^{1/T}              (Eq. 5)
    S_s = TopP(TopK(Temper_T[p0], k), top-p),  q_S = Temper_T^{S_s}[p0]      (Eqs. 6-7)

both computed by ``ssd.decoding.decode_probs`` (temperature → top-k → top-p, vLLM's rule).

The OCR of the paper is noisy; each formula below was reconstructed from its derivation and is
stated in the docstring of the function that implements it, with its equation number. Two notes
from that reconstruction:

- Eq. 15 is exact for ANY q supported on S and any T > 0 (T plays the role of T_train only
  through q = q_S); at p = p0 its KL anchor vanishes, because Temper_T^S[p0(·|S)] = q_S.
- The text after Eq. 22 states dH/dT = Var/T²; differentiating H(π_γ) with γ = 1/T gives
  dH/dT = γ·Var/T² = Var/T³, which is what Eq. 31 states. The tests confirm Var/T³.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssd.analysis import single_thread
from ssd.decoding import decode_probs

Array = np.ndarray

# --------------------------------------------------------------------------------------------
# Basic objects (B.1): tempering, the SSD target, information measures
# --------------------------------------------------------------------------------------------


def _decode(
    p: Array, temperature: float, top_k: int = 0, top_p: float = 1.0
) -> tuple[Array, Array]:
    """``decode_probs`` on a numpy distribution (any leading shape); returns (q_S, support)."""
    flat = np.ascontiguousarray(p, dtype=np.float64).reshape(-1, p.shape[-1])
    with single_thread():
        out = decode_probs(torch.from_numpy(flat), temperature, top_k=top_k, top_p=top_p)
    return out.probs.numpy().reshape(p.shape), out.support.numpy().reshape(p.shape)


def tempered(p: Array, temperature: float, support: Array | None = None) -> Array:
    """Temper_T^S[p] (Eq. 5): the power transform p^{1/T} renormalised on ``support`` (default V).

    Delegates to the reference decoder with truncation disabled, on p zeroed outside S.
    """
    masked = p if support is None else np.where(support, p, 0.0)
    return _decode(masked, temperature)[0]


def ssd_target(
    p0: Array, t_train: float, top_k: int = 0, top_p: float = 1.0
) -> tuple[Array, Array]:
    """The SSD training target (Eqs. 6-7): the retained support S_s and q_S on it."""
    q, support = _decode(p0, t_train, top_k=top_k, top_p=top_p)
    return support, q


def _xlogy(x: Array, y: Array) -> Array:
    """x·log y with the 0·log 0 = 0 convention (log y is only taken where x > 0)."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.zeros(x.shape)
    pos = x > 0
    out[pos] = x[pos] * np.log(y[pos])
    return out


def _power_on_support(p: Array, exponent: float) -> Array:
    """p^exponent where p > 0, and 0 elsewhere (so zero-probability tokens stay out)."""
    return np.power(p, exponent, where=p > 0, out=np.zeros(np.shape(p)))


def entropy(p: Array) -> Array:
    """Shannon entropy H(p) in nats, over the last axis."""
    return -_xlogy(p, p).sum(axis=-1)


def cross_entropy(q: Array, p: Array) -> Array:
    """CE(q, p) = -Σ_v q(v) log p(v) (Eq. 8); infinite if p misses q's support."""
    return -_xlogy(q, p).sum(axis=-1)


def kl_divergence(q: Array, p: Array) -> Array:
    """KL(q ‖ p) = CE(q, p) - H(q)."""
    return cross_entropy(q, p) - entropy(q)


def renyi_entropy(p: Array, alpha: float) -> Array:
    """H_α(p) = log(Σ p^α) / (1 - α) over the support of p; Shannon entropy at α = 1."""
    if alpha == 1.0:
        return entropy(p)
    return np.log(_power_on_support(p, alpha).sum(axis=-1)) / (1.0 - alpha)


def free_energy(p: Array, temperature: float) -> Array:
    """-T log Σ_{v∈supp p} p(v)^{1/T}, the left side of the free-energy identity (Eq. 16)."""
    return -temperature * np.log(_power_on_support(p, 1.0 / temperature).sum(axis=-1))


def kept_mass(p: Array, support: Array) -> Array:
    """KeptMass_θ = Σ_{v∈S} p_θ(v) (Eq. 10): the student's mass on the teacher's support."""
    return np.where(support, p, 0.0).sum(axis=-1)


def restrict(p: Array, support: Array) -> Array:
    """p_θ(·|s, S) = p_θ 1_S / KeptMass_θ (Eq. 11)."""
    masked = np.where(support, p, 0.0)
    return masked / masked.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# B.2: the learning signal
# --------------------------------------------------------------------------------------------


def score_function_mean(logits: Array) -> Array:
    """E_{v~p_θ}[∇_z log p_θ(v)] at a softmax over ``logits`` (Eq. 9).

    Computed as p·J with J the autograd Jacobian of log-softmax, i.e. literally the expected
    score; it is zero because Σ_v p_θ(v) = 1 — the reason naive self-training is a fixed point.
    """
    z = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    with single_thread():
        jac = torch.autograd.functional.jacobian(lambda x: x.log_softmax(-1), z)
        probs = z.softmax(-1)
    return (probs @ jac).numpy()


def ce_logit_gradient(target: Array, logits: Array) -> Array:
    """∇_z CE(target, softmax(z)) by autograd: the expected SFT update at these logits."""
    z = torch.tensor(np.asarray(logits, dtype=np.float64), requires_grad=True)
    q = torch.from_numpy(np.asarray(target, dtype=np.float64))
    with single_thread():
        loss = -(q * z.log_softmax(-1)).where(q > 0, torch.zeros_like(q)).sum()
        loss.backward()
    assert z.grad is not None
    return z.grad.numpy()


def naive_self_training_gradient(p0: Array) -> Array:
    """The SFT gradient at θ = θ0 when the target is p0 sampled at T = 1 with no truncation.

    Eq. 9: the target produced by ``decode_probs(p0, 1.0)`` is p0 itself, so the gradient is zero
    (the CE minimiser is p0: naive self-training is a fixed point).
    """
    _, target = ssd_target(p0, t_train=1.0)
    return ce_logit_gradient(target, np.log(p0))


@dataclass(frozen=True)
class GateConditional:
    """The two levels of Eq. 12: L = -log KeptMass_θ + CE(q_S, p_θ(·|S))."""

    gate: float
    conditional: float

    @property
    def total(self) -> float:
        return self.gate + self.conditional


def gate_conditional(q: Array, p: Array, support: Array) -> GateConditional:
    """Eq. 12, exact whenever q is supported inside S."""
    return GateConditional(
        float(-np.log(kept_mass(p, support))),
        float(cross_entropy(q, restrict(p, support))),
    )


@dataclass(frozen=True)
class SSDLossTerms:
    """The three-term decomposition of Eq. 15 (plus the θ-independent T·H(q))::

    CE(q_S, p_θ) = -log KeptMass_θ                      support compression (gate)
                 + (1 - T) H_{1/T}(p_θ(·|S))            within-support reshaping (Rényi)
                 + T · KL(q_S ‖ Temper_T^S[p_θ(·|S)])   alignment (KL anchor)
                 + T · H(q_S)                           constant in θ
    """

    gate: float
    renyi: float
    kl_anchor: float
    target_entropy: float

    @property
    def total(self) -> float:
        return self.gate + self.renyi + self.kl_anchor + self.target_entropy


def ssd_loss_terms(q: Array, p: Array, support: Array, temperature: float) -> SSDLossTerms:
    """Eq. 15 term by term; with S = V the gate vanishes and it reduces to Eq. 14.

    Derivation (B.2 proof sketch): on S, log p_θ(v|S) = T log Temper_T^S[p_θ(·|S)](v) + T log Z
    with Z = Σ_S p_θ(u|S)^{1/T}; taking E_q gives T·H(q) + T·KL(...) - T log Z, and
    -T log Z = (1-T) H_{1/T} (Eq. 16). The Rényi term is computed from its definition (not via
    Eq. 16) so that the identity check is not circular; at T = 1 it is 0 by continuity.
    """
    if np.any(~support & (q > 0)):
        raise ValueError("q must be supported inside S (it is the truncated target q_S)")
    conditional = restrict(p, support)
    renyi = (
        0.0
        if temperature == 1.0
        else (1.0 - temperature) * renyi_entropy(conditional, 1.0 / temperature)
    )
    anchor = kl_divergence(q, tempered(conditional, temperature, support))
    return SSDLossTerms(
        gate=float(-np.log(kept_mass(p, support))),
        renyi=float(renyi),
        kl_anchor=float(temperature * anchor),
        target_entropy=float(temperature * entropy(q)),
    )


@dataclass(frozen=True)
class LogitGradientTerms:
    """Eq. 17: ∂L/∂z = p_θ - q_S split into support transfer, within-support fit and tail push."""

    support_transfer: Array  # -(1 - KeptMass) p_θ(v|S) on S, 0 outside
    within_support: Array  # p_θ(v|S) - q_S(v) on S, 0 outside
    outside: Array  # p_θ(v) outside S (strictly positive), 0 on S

    @property
    def total(self) -> Array:
        return self.support_transfer + self.within_support + self.outside


def logit_gradient_terms(q: Array, p: Array, support: Array) -> LogitGradientTerms:
    """Eq. 17's decomposition of the softmax-CE gradient at the student's logits."""
    kept = kept_mass(p, support)
    conditional = restrict(p, support)
    return LogitGradientTerms(
        support_transfer=np.where(support, -(1.0 - kept) * conditional, 0.0),
        within_support=np.where(support, conditional - q, 0.0),
        outside=np.where(support, 0.0, p),
    )


# --------------------------------------------------------------------------------------------
# B.3: temperature composition, sensitivity and the ideal-fit picture
# --------------------------------------------------------------------------------------------


def compose_temperatures(
    p: Array, t1: float, t2: float, support: Array | None = None
) -> tuple[Array, Array]:
    """Lemma B.1: (Temper_{T2}[Temper_{T1}[p]], Temper_{T1·T2}[p]), both via the decoder."""
    return tempered(tempered(p, t1, support), t2, support), tempered(p, t1 * t2, support)


def ideal_fit_eval_policy(p0: Array, support: Array, t_train: float, t_eval: float) -> Array:
    """Prop. B.2 (Eq. 25): under ideal fit p_θ = q_S, Temper_τ[q_S] = Temper_{T_train·τ}^S[p0].

    The student decoded at τ behaves, inside S, like the teacher at T_eff = T_train · τ.
    """
    return tempered(p0, t_train * t_eval, support)


@dataclass(frozen=True)
class LocalGain:
    """Prop. B.3 (Eq. 27) for an event A ⊆ S::

    q_{S,τ}(A) = (1 / m_s(τ)) · [π_{S,1/(T_train τ)}(A) / π_{S,1/τ}(A)] · p_{0,τ}(A)

    with π_{S,γ} ∝ p0^γ on S (Eq. 18) and m_s(τ) = p_{0,τ}(S) (Eq. 26).
    """

    compression: float  # 1 / m_s(τ): teacher mass that would have leaked outside S, recovered
    reshaping: float  # π_{S,1/(T_train τ)}(A) / π_{S,1/τ}(A): redistribution inside S
    teacher: float  # p_{0,τ}(A): the teacher's own evaluation-time probability of A

    @property
    def student(self) -> float:
        return self.compression * self.reshaping * self.teacher


def local_gain(p0: Array, support: Array, t_train: float, t_eval: float, event: Array) -> LocalGain:
    """The two gain channels of Prop. B.3, computed from the teacher alone."""
    teacher_eval = tempered(p0, t_eval)
    m = kept_mass(teacher_eval, support)
    pi_student = tempered(p0, t_train * t_eval, support)
    pi_teacher = tempered(p0, t_eval, support)
    return LocalGain(
        compression=float(1.0 / m),
        reshaping=float(pi_student[event].sum() / pi_teacher[event].sum()),
        teacher=float(teacher_eval[event].sum()),
    )


def escort_derivative(p: Array, gamma: float, f: Array, support: Array | None = None) -> float:
    """d/dγ E_{π_γ}[f] by autograd through the decoder, π_γ = Temper_{1/γ}^S[p] (Eqs. 18-19).

    Restricting to S is done by slicing rather than zeroing: a -inf logit would turn the
    temperature derivative into 0·inf = NaN.
    """
    keep = np.ones(p.shape, dtype=bool) if support is None else np.asarray(support, dtype=bool)
    g = torch.tensor(float(gamma), dtype=torch.float64, requires_grad=True)
    with single_thread():
        pi = decode_probs(torch.from_numpy(np.ascontiguousarray(p[keep])), 1.0 / g).probs
        values = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float64)[keep])
        (pi * values).sum().backward()
    assert g.grad is not None
    return float(g.grad)


def escort_covariance(p: Array, gamma: float, f: Array, support: Array | None = None) -> float:
    """Cov_{π_γ}(f, log p) (Eq. 19's right side; Eq. 20 with f = 1_A)."""
    pi = tempered(p, 1.0 / gamma, support)
    on = pi > 0
    log_p = np.zeros_like(p)
    log_p[on] = np.log(p[on])
    mean_f, mean_l = (pi * f).sum(), (pi * log_p).sum()
    return float((pi * (f - mean_f) * (log_p - mean_l)).sum())


def entropy_temperature_derivative(p: Array, temperature: float) -> float:
    """dH(Temper_T[p])/dT by autograd through the decoder (left side of Eq. 31)."""
    t = torch.tensor(float(temperature), dtype=torch.float64, requires_grad=True)
    with single_thread():
        q = decode_probs(torch.from_numpy(p), t).probs
        h = -(q * q.log()).where(q > 0, torch.zeros_like(q)).sum()
        h.backward()
    assert t.grad is not None
    return float(t.grad)


def entropy_temperature_variance_form(p: Array, temperature: float) -> float:
    """Var_{Temper_T[p]}[log p] / T³ (right side of Eq. 31; = γ·Var/T² from Eq. 22)."""
    q = tempered(p, temperature)
    on = q > 0
    log_p = np.log(p[on])
    mean = (q[on] * log_p).sum()
    return float((q[on] * (log_p - mean) ** 2).sum() / temperature**3)


# --------------------------------------------------------------------------------------------
# B.4: entropy decomposition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntropyTerms:
    """Eq. 30: H(p_θ) = h_b(K) + K·H(p_θ(·|S)) + (1-K)·H(u_θ), K = KeptMass_θ."""

    gate: float  # binary entropy of the in/out split
    head: float  # K · conditional entropy on S
    tail: float  # (1 - K) · entropy of the complement-conditional u_θ

    @property
    def total(self) -> float:
        return self.gate + self.head + self.tail


def binary_entropy(x: float) -> float:
    """h_b(x) = -x log x - (1-x) log(1-x), with h_b(0) = h_b(1) = 0."""
    return float(entropy(np.array([x, 1.0 - x])))


def entropy_decomposition(p: Array, support: Array) -> EntropyTerms:
    """Split H(p) over S and its complement (Eq. 30); the tail term is 0 when K = 1."""
    kept = float(kept_mass(p, support))
    tail_mass = 1.0 - kept
    tail = 0.0
    if np.any(~support & (p > 0)):
        tail = tail_mass * float(entropy(restrict(p, ~support)))
    return EntropyTerms(
        gate=binary_entropy(kept),
        head=kept * float(entropy(restrict(p, support))),
        tail=tail,
    )


# --------------------------------------------------------------------------------------------
# B.5: decode-only policies and their normal form
# --------------------------------------------------------------------------------------------

DECODE_OPERATORS = ("temperature", "top_k", "top_p")


def apply_decode_order(
    p: Array, order: Sequence[str], temperature: float, top_k: int, top_p: float
) -> Array:
    """Compose T_α, K_k and P_top-p (Eqs. 32-34) in ``order``, each one a reference-decoder call.

    Each step renormalises, so later operators see the previous step's distribution (e.g. top-p
    after temperature thresholds the tempered masses).
    """
    steps: dict[str, Callable[[Array], Array]] = {
        "temperature": lambda x: _decode(x, temperature)[0],
        "top_k": lambda x: _decode(x, 1.0, top_k=top_k)[0],
        "top_p": lambda x: _decode(x, 1.0, top_p=top_p)[0],
    }
    out = np.asarray(p, dtype=np.float64)
    for name in order:
        out = steps[name](out)
    return out


def all_decode_orders() -> list[tuple[str, ...]]:
    """The 3! permutations σ of Prop. B.5."""
    return list(itertools.permutations(DECODE_OPERATORS))


def ranking(p: Array) -> Array:
    """Token indices by decreasing probability (ties broken by index)."""
    return np.argsort(-p, kind="stable")


def normal_form(p: Array, alpha: float, prefix: int) -> Array:
    """Eq. 35: p_(i)^α on the top-``prefix`` ranks of p, renormalised; zero elsewhere."""
    keep = np.zeros(p.shape, dtype=bool)
    keep[ranking(p)[:prefix]] = True
    powered = _power_on_support(np.where(keep, p, 0.0), alpha)
    return powered / powered.sum()


def prefix_length(p: Array, policy: Array) -> int:
    """m such that ``policy``'s support is exactly the top-m prefix of p's ranking (Cor. B.6).

    Raises if the support is not a prefix — the situation Prop. B.5 rules out.
    """
    kept = policy > 0
    m = int(kept.sum())
    if not kept[ranking(p)[:m]].all():
        raise ValueError("support is not a prefix of the ranking")
    return m


def vllm_prefix_length(p: Array, temperature: float, top_k: int, top_p: float) -> int:
    """m_σ(τ, k, top-p) = min{m ≤ k : S_m(τ, k) ≥ top-p} for the vLLM order (Eqs. 37-40).

    S_m(τ, k) = Σ_{i≤m} p_(i)^{1/τ} / Σ_{j≤k} p_(j)^{1/τ} is the tempered prefix mass within the
    top-k; computed directly from the sorted powers, independently of the decoder.
    """
    vocab = p.shape[-1]
    k = vocab if top_k <= 0 or top_k >= vocab else top_k
    powered = np.sort(p)[::-1][:k] ** (1.0 / temperature)
    mass = np.cumsum(powered) / powered.sum()
    if top_p >= 1.0:
        return k
    return int(np.argmax(mass >= top_p)) + 1
