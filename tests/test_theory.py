"""Appendix B identities, checked to 1e-9 on seeded random distributions.

Every decoding step goes through ``ssd.decoding`` (via ``ssd.analysis.theory``), so these tests
also pin the reference decoder to the paper's operators (temperature, top-k, top-p).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ssd.analysis import single_thread, theory
from ssd.decoding import decode_probs

TOL = 1e-9
VOCABS = (5, 16, 64, 257)
TEMPERATURES = (0.5, 0.9, 1.0, 1.5, 2.0)
TRUNCATIONS = ((0, 1.0), (0, 0.8), (3, 1.0), (10, 0.95), (10, 0.5))  # (top-k, top-p)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: avoid thread-pool stalls on a shared CPU (restored after each test)."""
    with single_thread():
        yield


def random_distribution(rng: np.random.Generator, vocab: int) -> np.ndarray:
    """Peaked-to-flat distributions without ties: softmax of scaled Gaussian logits."""
    scale = rng.uniform(0.5, 4.0)
    logits = scale * rng.standard_normal(vocab)
    p = np.exp(logits - logits.max())
    return p / p.sum()


def cases(n_per_vocab: int = 3, seed: int = 0):
    """(p0, p_student, vocab) triples across vocab sizes."""
    rng = np.random.default_rng(seed)
    for vocab in VOCABS:
        for _ in range(n_per_vocab):
            yield random_distribution(rng, vocab), random_distribution(rng, vocab), vocab


# ------------------------------------------------------------------ B.2: learning signal


def test_naive_self_training_is_a_fixed_point():
    """Eq. 9: at T = 1 without truncation the target is p0 and the expected update is zero."""
    for p0, _, _ in cases():
        support, target = theory.ssd_target(p0, t_train=1.0)
        assert support.all()
        np.testing.assert_allclose(target, p0, atol=TOL, rtol=0)
        np.testing.assert_allclose(theory.naive_self_training_gradient(p0), 0.0, atol=TOL)
        np.testing.assert_allclose(theory.score_function_mean(np.log(p0)), 0.0, atol=TOL)


def test_self_training_minimiser_is_p0_and_ssd_moves_it():
    """The CE minimiser is the target (Gibbs); temperature or truncation makes it differ from p0."""
    rng = np.random.default_rng(1)
    for p0, p, _ in cases():
        assert theory.cross_entropy(p0, p) > theory.cross_entropy(p0, p0)
        for t_train, top_p in ((1.5, 1.0), (1.0, 0.8), (0.9, 0.85)):
            _, q = theory.ssd_target(p0, t_train, top_p=top_p)
            grad = theory.ce_logit_gradient(q, np.log(p0))
            np.testing.assert_allclose(grad, p0 - q, atol=TOL)  # softmax-CE gradient p - q
            assert np.abs(grad).max() > 1e-6
            other = random_distribution(rng, p0.size)
            assert theory.cross_entropy(q, other) > theory.cross_entropy(q, q)


def test_gate_conditional_factorisation():
    """Eq. 12: CE(q_S, p_θ) = -log KeptMass_θ + CE(q_S, p_θ(·|S)) for every truncation."""
    for p0, p, _ in cases():
        for t_train in TEMPERATURES:
            for top_k, top_p in TRUNCATIONS:
                support, q = theory.ssd_target(p0, t_train, top_k, top_p)
                parts = theory.gate_conditional(q, p, support)
                assert parts.total == pytest.approx(float(theory.cross_entropy(q, p)), abs=TOL)
                if support.all():
                    assert parts.gate == pytest.approx(0.0, abs=TOL)
                else:
                    assert parts.gate > 0


def test_truncated_loss_infimum_is_target_entropy_and_not_attained():
    """Eq. 13: pushing outside logits to -inf lowers CE(q_S, ·) to H(q_S), never reaching it."""
    for p0, _, _ in cases(n_per_vocab=1):
        support, q = theory.ssd_target(p0, 0.9, top_p=0.85)
        if support.all():
            continue
        losses = []
        for depth in (0.0, 2.0, 5.0, 10.0, 20.0):
            logits = np.where(support, np.log(np.where(support, q, 1.0)), np.log(p0) - depth)
            p = np.exp(logits - logits.max())
            losses.append(float(theory.cross_entropy(q, p / p.sum())))
        h = float(theory.entropy(q))
        assert all(a > b for a, b in itertools.pairwise(losses))
        assert all(loss > h for loss in losses)
        assert losses[-1] == pytest.approx(h, abs=1e-7)


def test_free_energy_identity():
    """Eq. 16: -T log Σ π^{1/T} = (1 - T) H_{1/T}(π), including the T = 1 continuous extension."""
    for p0, _, _ in cases():
        for t in TEMPERATURES:
            lhs = theory.free_energy(p0, t)
            rhs = 0.0 if t == 1.0 else (1 - t) * theory.renyi_entropy(p0, 1 / t)
            assert lhs == pytest.approx(rhs, abs=TOL)
        near = theory.renyi_entropy(p0, 1 + 1e-7)
        assert near == pytest.approx(float(theory.entropy(p0)), abs=1e-5)


def test_three_term_decomposition():
    """Eq. 15 (and Eq. 14 when S = V) sums to CE(q_S, p_θ) exactly, for every T and truncation."""
    for p0, p, _ in cases():
        for t_train in TEMPERATURES:
            for top_k, top_p in TRUNCATIONS:
                support, q = theory.ssd_target(p0, t_train, top_k, top_p)
                terms = theory.ssd_loss_terms(q, p, support, t_train)
                assert terms.total == pytest.approx(float(theory.cross_entropy(q, p)), abs=TOL)
                # Each term has its stated sign/role.
                assert terms.kl_anchor >= -TOL
                if t_train == 1.0:
                    assert terms.renyi == 0.0
                elif support.sum() > 1:
                    assert np.sign(terms.renyi) == np.sign(1 - t_train)
                if support.all():
                    assert terms.gate == pytest.approx(0.0, abs=TOL)


def test_three_term_decomposition_rejects_targets_outside_the_support():
    p0 = np.array([0.5, 0.3, 0.2])
    with pytest.raises(ValueError, match="supported inside S"):
        theory.ssd_loss_terms(p0, p0, np.array([True, True, False]), 0.9)


def test_three_term_decomposition_special_points():
    """At p_θ = p0 the KL anchor vanishes; at p_θ = q_S the loss equals its infimum H(q_S)."""
    for p0, _, _ in cases():
        for t_train in (0.5, 0.9, 1.5):
            support, q = theory.ssd_target(p0, t_train, top_k=10, top_p=0.9)
            at_init = theory.ssd_loss_terms(q, p0, support, t_train)
            assert at_init.kl_anchor == pytest.approx(0.0, abs=TOL)
            at_target = theory.ssd_loss_terms(q, q, support, t_train)
            assert at_target.gate == pytest.approx(0.0, abs=TOL)
            assert at_target.total == pytest.approx(float(theory.entropy(q)), abs=TOL)


def test_logit_gradient_decomposition_matches_autograd():
    """Eq. 17: support transfer + within-support fit + outside push = autograd ∇_z CE."""
    for p0, p, _ in cases():
        support, q = theory.ssd_target(p0, 1.5, top_k=10, top_p=0.8)
        parts = theory.logit_gradient_terms(q, p, support)
        np.testing.assert_allclose(parts.total, theory.ce_logit_gradient(q, np.log(p)), atol=TOL)
        assert (parts.outside[~support] > 0).all()
        assert (parts.support_transfer[support] <= 0).all()


# ------------------------------------------------------------------ B.3: composition, ideal fit


def test_temperatures_compose_multiplicatively():
    """Lemma B.1, on V and on a fixed support S."""
    for p0, _, _ in cases():
        support, _ = theory.ssd_target(p0, 1.0, top_k=3)
        for t1, t2 in itertools.product(TEMPERATURES, repeat=2):
            for s in (None, support):
                twice, once = theory.compose_temperatures(p0, t1, t2, s)
                np.testing.assert_allclose(twice, once, atol=TOL, rtol=0)


def test_ideal_fit_student_is_teacher_at_product_temperature():
    """Prop. B.2: decoding q_S at τ equals the teacher restricted to S at T_train·τ."""
    for p0, _, _ in cases():
        for t_train, t_eval in itertools.product((0.7, 0.9, 1.5, 2.0), (0.6, 1.0, 1.3)):
            for top_k, top_p in TRUNCATIONS:
                support, q = theory.ssd_target(p0, t_train, top_k, top_p)
                student = decode_probs(torch.from_numpy(q), t_eval).probs.numpy()
                expected = theory.ideal_fit_eval_policy(p0, support, t_train, t_eval)
                np.testing.assert_allclose(student, expected, atol=TOL, rtol=0)


def test_local_gain_decomposition_and_limits():
    """Prop. B.3's two channels multiply to the student's event probability; Remark B.4 limits."""
    rng = np.random.default_rng(2)
    for p0, _, _ in cases():
        for t_train, t_eval in ((0.9, 1.0), (1.5, 0.7), (2.0, 1.3)):
            support, q = theory.ssd_target(p0, t_train, top_p=0.9)
            event = support & (rng.random(p0.size) < 0.5)
            event[theory.ranking(p0)[0]] = True
            student = theory.tempered(q, t_eval)[event].sum()
            gain = theory.local_gain(p0, support, t_train, t_eval, event)
            assert gain.student == pytest.approx(float(student), abs=TOL)
            assert gain.compression >= 1.0
            # No truncation: no compression gain, pure temperature composition (Eq. 28).
            full = np.ones_like(support)
            g_full = theory.local_gain(p0, full, t_train, t_eval, event)
            assert g_full.compression == pytest.approx(1.0, abs=TOL)
            # T_train = 1: no reshaping gain, pure support compression (Eq. 29).
            g_unit = theory.local_gain(p0, support, 1.0, t_eval, event)
            assert g_unit.reshaping == pytest.approx(1.0, abs=TOL)
            teacher_eval = theory.tempered(p0, t_eval)
            assert g_unit.student == pytest.approx(
                teacher_eval[event].sum() / teacher_eval[support].sum(), abs=TOL
            )


def test_escort_covariance_identity():
    """Eq. 19 (and Eq. 20 with an indicator): d/dγ E_{π_γ}[f] = Cov_{π_γ}(f, log p0)."""
    rng = np.random.default_rng(3)
    for p0, _, _ in cases():
        support, _ = theory.ssd_target(p0, 1.0, top_p=0.9)
        for gamma in (0.5, 1.0, 2.5):
            for f in (rng.standard_normal(p0.size), (rng.random(p0.size) < 0.3).astype(float)):
                lhs = theory.escort_derivative(p0, gamma, f, support)
                rhs = theory.escort_covariance(p0, gamma, f, support)
                assert lhs == pytest.approx(rhs, abs=TOL)


def test_entropy_temperature_derivative_is_variance_over_t_cubed():
    """Eq. 31 / Eq. 22: dH/dT = Var[log p]/T³ ≥ 0 (not Var/T² as the text after Eq. 22 says)."""
    for p0, _, _ in cases():
        for t in (0.5, 1.0, 1.7):
            d = theory.entropy_temperature_derivative(p0, t)
            assert d == pytest.approx(theory.entropy_temperature_variance_form(p0, t), abs=TOL)
            assert d >= 0
            if abs(t - 1.0) > 0.1:
                assert abs(d - d * t) > 1e-6  # the T² reading would differ by a factor T


# ------------------------------------------------------------------ B.4: entropy decomposition


def test_entropy_decomposition_gate_head_tail():
    """Eq. 30 for SSD supports and for arbitrary (non-prefix) subsets."""
    rng = np.random.default_rng(4)
    for p0, p, _ in cases():
        supports = [theory.ssd_target(p0, t, k, tp)[0] for t in (0.9, 1.5) for k, tp in TRUNCATIONS]
        random_subset = rng.random(p0.size) < 0.5
        random_subset[0] = True
        for support in [*supports, random_subset]:
            terms = theory.entropy_decomposition(p, support)
            assert terms.total == pytest.approx(float(theory.entropy(p)), abs=TOL)
            if support.all():
                assert terms.gate == pytest.approx(0.0, abs=TOL)
                assert terms.tail == 0.0


# ------------------------------------------------------------------ B.5: decode-only normal form


def test_every_operator_order_is_a_power_transform_on_a_prefix():
    """Prop. B.5 with Cor. B.6/B.7: all 6 orders of decoding.py's operators give Eq. 35."""
    prefix_lengths_differ = False
    for p0, _, _ in cases():
        for t, (k, tp) in itertools.product((0.5, 1.0, 1.8), ((3, 0.8), (10, 0.6), (0, 0.95))):
            lengths = {}
            for order in theory.all_decode_orders():
                policy = theory.apply_decode_order(p0, order, t, k, tp)
                m = theory.prefix_length(p0, policy)  # raises if not a prefix
                np.testing.assert_allclose(policy, theory.normal_form(p0, 1 / t, m), atol=TOL)
                kept = np.flatnonzero(policy > 0)
                if kept.size > 1:  # power rigidity: log-odds scaled by α = 1/T
                    log_odds = np.log(policy[kept[1:]] / policy[kept[0]])
                    base = np.log(p0[kept[1:]] / p0[kept[0]])
                    np.testing.assert_allclose(log_odds, base / t, atol=1e-8)
                if k > 0:
                    assert m <= k
                lengths[order] = m
            prefix_lengths_differ |= len(set(lengths.values())) > 1
            vllm = lengths[("temperature", "top_k", "top_p")]
            assert vllm == theory.vllm_prefix_length(p0, t, k, tp)
    assert prefix_lengths_differ  # the order moves the boundary, never the functional form


def test_vllm_prefix_length_matches_decoder_and_is_monotone():
    """Eqs. 38-40: m_σ from the analytic prefix mass equals decode's support; nondecreasing."""
    for p0, _, vocab in cases():
        temps = (0.3, 0.6, 1.0, 1.5, 3.0)
        ks = (1, 3, 10, 0)
        tps = (0.3, 0.6, 0.9, 0.99)
        table = np.zeros((len(temps), len(ks), len(tps)), dtype=int)
        for (i, t), (j, k), (r, tp) in itertools.product(
            enumerate(temps), enumerate(ks), enumerate(tps)
        ):
            decoded = decode_probs(torch.from_numpy(p0), t, top_k=k, top_p=tp)
            m = int(decoded.support.sum())
            assert m == theory.vllm_prefix_length(p0, t, k, tp)
            table[i, j, r] = m
        assert (np.diff(table, axis=0) >= 0).all()
        assert (np.diff(table, axis=1) >= 0).all()  # k = 0 (disabled) is the widest, last
        assert (np.diff(table, axis=2) >= 0).all()
        assert table.max() <= vocab
