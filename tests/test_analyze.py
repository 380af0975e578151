"""analyze.py: the Figure 6 / Eq. 30 measures on hand-made distributions, the tokens command on
the tiny model against a genuinely different (sharpened) "SSD" model, the T_eff command on
synthetic records, the toy command through the real entry script, and config errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssd.analysis import tokens
from ssd.analysis.report import load_result_records, run_analysis, truncation_label
from ssd.config import ConfigError
from ssd.sampling import chat_prompt_ids
from tests.conftest import REPO, compose

LN2 = math.log(2.0)


def logits_of(*rows: list[float]) -> torch.Tensor:
    """Float64 logits whose softmax is exactly each (normalised) row."""
    return torch.tensor(rows, dtype=torch.float64).log()


# --------------------------------------------------------------------------------------------
# Pure measures
# --------------------------------------------------------------------------------------------


def test_cumulative_mass_and_top_mass_follow_the_ranking():
    z = logits_of([0.125, 0.5, 0.125, 0.25], [0.25, 0.25, 0.25, 0.25])
    mass = tokens.cumulative_mass_by_rank(z, 3)
    np.testing.assert_allclose(mass, [[0.5, 0.75, 0.875], [0.25, 0.5, 0.75]], atol=1e-12)
    np.testing.assert_allclose(tokens.top_mass(z, 2), [0.75, 0.5], atol=1e-12)
    # More ranks than tokens: the curve ends at 1.
    assert tokens.cumulative_mass_by_rank(z, 10)[:, -1] == pytest.approx([1.0, 1.0])


def test_truncation_response_counts_survivors_and_their_entropy():
    uniform = [0.25] * 4
    skewed = [0.7, 0.2, 0.1, 1e-12]
    z = logits_of(uniform, skewed)
    sizes, entropy = tokens.truncation_response(z, [0.05, 1.0, 3.0], top_k=0, top_p=0.8)
    # Uniform: temperature changes nothing, top-p 0.8 keeps all four (3 tokens hold only 0.75).
    assert sizes[0].tolist() == [4, 4, 4]
    np.testing.assert_allclose(entropy[0], math.log(4), atol=1e-12)
    # Skewed: near-greedy keeps 1 token; at T=1 top-p 0.8 keeps {0.7, 0.2} renormalised.
    assert sizes[1, 0] == 1 and entropy[1, 0] == pytest.approx(0.0, abs=1e-12)
    q = np.array([0.7, 0.2]) / 0.9
    assert sizes[1, 1] == 2
    assert entropy[1, 1] == pytest.approx(-(q * np.log(q)).sum(), abs=1e-12)
    # Hotter: more survivors and more entropy after truncation (6b, 6c are monotone here).
    assert sizes[1, 2] >= sizes[1, 1] and entropy[1, 2] > entropy[1, 1]
    # top-k = 1 leaves one survivor whatever T is, except that ties with the k-th logit survive
    # (vLLM's rule, kept by ssd.decoding): the uniform row keeps all four.
    sizes_k1, entropy_k1 = tokens.truncation_response(z, [0.5, 2.0], top_k=1)
    assert sizes_k1.tolist() == [[4, 4], [1, 1]]
    np.testing.assert_allclose(entropy_k1, [[math.log(4)] * 2, [0.0, 0.0]], atol=1e-12)


def test_entropy_terms_match_eq30_by_hand():
    p = [0.5, 0.25, 0.125, 0.125]
    z = logits_of(p, p)
    support = np.array([[True, False, False, False], [True, True, False, False]])
    terms = tokens.entropy_terms(z, support)
    h_p = 1.75 * LN2
    # S = {0}: gate h_b(1/2) = ln 2, head 0 (singleton), tail 1/2 · H(1/2, 1/4, 1/4) = 0.75 ln 2.
    np.testing.assert_allclose(terms[0], [LN2, 0.0, 0.75 * LN2, 0.5, h_p], atol=1e-12)
    # S = {0, 1}: K = 3/4, head 3/4 · H(2/3, 1/3), tail 1/4 · ln 2.
    k = 0.75
    gate = -(k * math.log(k) + (1 - k) * math.log(1 - k))
    head = k * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    np.testing.assert_allclose(terms[1], [gate, head, 0.25 * LN2, k, h_p], atol=1e-12)
    assert terms[:, :3].sum(axis=1) == pytest.approx(terms[:, 4], abs=1e-12)


def test_retained_support_is_the_decoders_and_splits_by_its_size():
    z = logits_of([0.9, 0.05, 0.05], [0.4, 0.35, 0.25])
    support = tokens.retained_support(z, 1.0, top_k=0, top_p=0.8)
    assert support.sum(axis=1).tolist() == [1, 3]
    masks = tokens.split_masks(np.array([1, 3, 1, 2]))
    assert masks["lock"].tolist() == [True, False, True, False]
    assert masks["fork"].tolist() == [False, True, False, True]
    assert masks["all"].all()
    assert tokens.split_masks(np.array([1, 3, 1, 2]), lock_max_support=2)["lock"].tolist() == [
        True, False, True, True]


def test_summarise_reports_each_split_and_the_matched_contexts():
    settings = tokens.TokenSettings(t_grid=(0.5, 1.0), top_k=0, top_p=0.9, support_top_p=0.8,
                                    ranks=2, matched_k=1, matched_tolerance=0.05, matched_t=1.0,
                                    matched_bins=(0.0, 0.5, 1.0))
    # Context 0 is a lock for the base (0.9 > top-p 0.8); contexts 1-2 are forks.
    base_rows = [[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1]]
    ssd_rows = [[0.98, 0.01, 0.01], [0.42, 0.4, 0.18], [0.8, 0.15, 0.05]]
    z_base, z_ssd = logits_of(*base_rows), logits_of(*ssd_rows)
    support = tokens.retained_support(z_base, 1.0, top_p=0.8)
    base = tokens.measure_contexts(z_base, support, settings)
    ssd = tokens.measure_contexts(z_ssd, support, settings)
    summary = tokens.summarise(base, ssd, support.sum(axis=1), settings)

    assert summary["n_contexts"] == 3 and summary["decomposition_max_abs_error"] < 1e-12
    lock, fork = summary["splits"]["lock"], summary["splits"]["fork"]
    assert (lock["n"], fork["n"], lock["support_s_mean"]) == (1, 2, 1.0)
    assert lock["base"]["cumulative_mass"] == pytest.approx([0.9, 0.95])
    assert fork["ssd"]["cumulative_mass"][0] == pytest.approx((0.42 + 0.8) / 2)
    # At a lock the head is a singleton: head entropy 0 for both models.
    assert lock["base"]["entropy_decomposition"]["head"] == pytest.approx(0.0, abs=1e-12)
    assert lock["ssd"]["entropy_decomposition"]["kept_mass"] == pytest.approx(0.98)
    # Top-1 masses differ by 0.08, 0.02, 0.2: only context 1 is matched (a fork).
    assert (summary["splits"]["all"]["matched"]["n"], lock["matched"]["n"]) == (1, 0)
    assert fork["matched"]["n"] == 1
    assert fork["base"]["matched_entropy_after_truncation"] == pytest.approx(
        base.truncated_entropy[1].tolist())
    assert all(math.isnan(v) for v in lock["ssd"]["matched_entropy_after_truncation"])
    # Binned view at T=1: base top-1 masses 0.9, 0.4, 0.6 -> one in [0, 0.5), two in [0.5, 1].
    bins = summary["splits"]["all"]["mass_bins"]["bins"]
    assert [b["base"]["n"] for b in bins] == [1, 2]
    assert bins[0]["base"]["entropy_after_truncation"] == pytest.approx(
        base.truncated_entropy[1, 1])
    text = tokens.format_summary(summary, settings)
    assert text.count("\n") == 7 and "| lock | 1 | base |" in text


# --------------------------------------------------------------------------------------------
# command=tokens on real (tiny) models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharpened_model(tiny_model, tmp_path_factory) -> str:
    """A genuinely different model: the tiny one with its final norm scaled by 3.

    The logits are then exactly 3x the base's (the tied LM head is linear, no bias), so the "SSD"
    model is the base tempered at T = 1/3: known, and checkable below.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("sharpened")
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(3.0)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return str(folder)


@pytest.mark.slow
def test_tokens_command_compares_base_and_sharpened_model(sharpened_model, tmp_path):
    cfg = compose("analyze", [
        "command=tokens", "model=tiny", f"ssd.path={sharpened_model}", "data.limit=3",
        "tokens.max_new_tokens=32", "tokens.t_grid=[0.5,1.0,1.5,3.0]",
        # S_s at T=1, top-p 0.15: a singleton where the base's top token holds >= 15%.
        "tokens.support.T=1.0", "tokens.support.top_k=0", "tokens.support.top_p=0.15",
        "truncation.top_k=20", "truncation.top_p=0.8",
    ])
    result = run_analysis(cfg, tmp_path)
    for name in ("tokens.json", "contexts.jsonl", "tokens.png", "entropy_decomposition.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "tokens.json").read_text())
    assert saved["n_contexts"] == result["n_contexts"]
    rows = [json.loads(line) for line in (tmp_path / "contexts.jsonl").read_text().splitlines()]
    n = result["n_contexts"]
    assert len(rows) == n and 3 <= n <= 3 * 32
    assert result["decomposition_max_abs_error"] < 1e-9

    splits = result["splits"]
    lock, fork, every = splits["lock"], splits["fork"], splits["all"]
    assert lock["n"] > 0 and fork["n"] > 0 and lock["n"] + fork["n"] == n
    assert lock["support_s_mean"] == 1.0 and fork["support_s_mean"] >= 2.0
    for model in ("base", "ssd"):
        assert lock[model]["entropy_decomposition"]["head"] == pytest.approx(0.0, abs=1e-12)
    # Lock-like contexts are those where the base is most confident.
    assert lock["base"]["cumulative_mass"][0] > fork["base"]["cumulative_mass"][0]

    # The sharpened model is p_base^3 renormalised: more mass at the top, less entropy...
    base, ssd = every["base"], every["ssd"]
    assert ssd["cumulative_mass"][0] > base["cumulative_mass"][0]
    assert ssd["entropy_decomposition"]["entropy"] < base["entropy_decomposition"]["entropy"]
    assert ssd["support_size_mean"][1] < base["support_size_mean"][1]
    # ...and decoding it at 3T is decoding the base at T, context by context (T=1.5 vs 0.5).
    i05, i15 = 0, 2
    for row in rows:
        assert row["ssd"]["support_size"][i15] == row["base"]["support_size"][i05]
        assert row["ssd"]["entropy_after_truncation"][i15] == pytest.approx(
            row["base"]["entropy_after_truncation"][i05], abs=1e-4)
    # 6d is the 6c curve on exactly the contexts whose top-20 masses agree within tolerance.
    tol = result["settings"]["matched_tolerance"]
    matched = [r for r in rows if abs(r["base"]["top_mass"] - r["ssd"]["top_mass"]) <= tol]
    assert every["matched"]["n"] == len(matched)
    assert lock["matched"]["n"] + fork["matched"]["n"] == len(matched)
    assert sum(b["base"]["n"] for b in every["mass_bins"]["bins"]) == n


@pytest.mark.slow
def test_tokens_command_reads_recorded_completions(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    messages = [{"role": "system", "content": "Solve it."},
                {"role": "user", "content": "Print the sum of two integers."}]
    records = [
        {"prompt_id": "a", "messages": messages, "completion": "a, b = map(int, input().split())"},
        {"prompt_id": "b", "messages": messages, "completion": ""},  # empty: skipped
        {"prompt_id": "c", "messages": [*messages, {"role": "assistant", "content": "print(1)"}]},
        # a generate.py record: its ids as sampled are read, not its text
        {"prompt_id": "d", "messages": messages, "completion": "not these tokens",
         "prompt_token_ids": [5, 6, 7], "completion_token_ids": [40, 41, 42]},
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = compose("analyze", ["command=tokens", "model=tiny", f"tokens.samples={samples}",
                              "tokens.max_new_tokens=8"])
    result = run_analysis(cfg, tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    expected = sum(min(8, len(tokenizer(t, add_special_tokens=False)["input_ids"]))
                   for t in ("a, b = map(int, input().split())", "print(1)")) + 3
    assert result["n_contexts"] == expected and result["continuations"]["prompts"] == 3
    # Base and "SSD" are the same model here: every measure agrees exactly.
    every = result["splits"]["all"]
    assert every["base"] == every["ssd"] and every["matched"]["n"] == expected


@pytest.mark.slow
def test_teacher_forced_logits_line_up_with_the_sampled_tokens(tiny_model):
    from transformers import AutoTokenizer

    model = tokens.load_causal_lm(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": "Add two numbers."}])
    greedy = tokens.sample_continuation(model, prompt, 12, 0.0, 0, 1.0, seed=0)
    item = tokens.Continuation("p", tuple(prompt), tuple(greedy))
    # Row j of the teacher-forced logits predicts token j: under greedy decoding, its argmax.
    assert tokens.next_token_logits(model, item).argmax(dim=-1).tolist() == greedy
    hot = [tokens.sample_continuation(model, prompt, 12, 1.5, 0, 1.0, seed=s) for s in (1, 1, 2)]
    assert hot[0] == hot[1] and hot[0] != hot[2]  # seeded, and the seed matters


# --------------------------------------------------------------------------------------------
# command=teff
# --------------------------------------------------------------------------------------------


def synthetic_records(peak: float, curvature: float) -> list[dict]:
    return [{"t_train": tt, "t_eval": te, "pass@1": 0.5 - curvature * (tt * te - peak) ** 2,
             "truncation": {"top_k": 20, "top_p": 0.8}}
            for tt in (0.6, 1.0, 1.6) for te in (0.6, 0.8, 1.0, 1.2, 1.4)]


def test_teff_command_fits_records_from_files_and_folders(tmp_path):
    recs = synthetic_records(peak=1.2, curvature=0.3)
    (tmp_path / "a.json").write_text(json.dumps(recs[:5]))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[5:10]))
    for i, r in enumerate(recs[10:]):
        (tmp_path / "runs" / str(i)).mkdir(parents=True)
        (tmp_path / "runs" / str(i) / "metrics.json").write_text(json.dumps(r))
    # A second curve, named explicitly, with its peak elsewhere.
    other = [{**r, "group": "no truncation", "pass@1": 0.4 - 0.2 * (r["t_train"] * r["t_eval"]
                                                                    - 1.6) ** 2}
             for r in recs]
    (tmp_path / "c.json").write_text(json.dumps(other))
    files = [str(tmp_path / n) for n in ("a.json", "b.jsonl", "runs", "c.json")]
    cfg = compose("analyze", ["command=teff", f"teff.results=[{','.join(files)}]",
                              "teff.baseline=0.3"])
    result = run_analysis(cfg, tmp_path / "out")
    assert (tmp_path / "out" / "teff.png").stat().st_size > 0
    fits = {row["group"]: row for row in result["fits"]}
    assert set(fits) == {"top-k=20, top-p=0.8", "no truncation"}
    assert fits["top-k=20, top-p=0.8"]["n"] == 15
    assert fits["top-k=20, top-p=0.8"]["peak_t_eff"] == pytest.approx(1.2, abs=1e-6)
    assert fits["no truncation"]["peak_t_eff"] == pytest.approx(1.6, abs=1e-6)
    assert fits["no truncation"]["r_squared"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / "teff.json").read_text())
    assert len(saved["records"]) == 30 and saved["baseline"] == 0.3


def test_teff_record_errors_name_the_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"t_train": 1.0, "t_eval": 1.0, "pass@1": 0.2}) + "\n"
                   + json.dumps({"t_train": 1.0, "t_eval": 1.0}) + "\n")
    with pytest.raises(ConfigError, match=r"teff.results: .*bad.jsonl:2 lacks .*pass@1"):
        load_result_records([bad])
    with pytest.raises(ConfigError, match=r"teff.results: .*missing.json does not exist"):
        load_result_records([tmp_path / "missing.json"])
    assert truncation_label({"top_k": 0, "top_p": 1.0}) == "no truncation"
    assert truncation_label({"top_k": 10, "top_p": 1.0}) == "top-k=10"


# --------------------------------------------------------------------------------------------
# Validation and the entry script
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "key"), [
    (["command=tokens", "tokens.t_grid=[0.0,1.0]"], "tokens.t_grid"),
    (["command=tokens", "tokens.t_grid=[]"], "tokens.t_grid"),
    (["command=tokens", "tokens.support.T=-1"], "tokens.support.T"),
    (["command=tokens", "tokens.samples=/nonexistent/samples.jsonl"], "tokens.samples"),
    (["command=tokens", "tokens.matched.bins=[0.5,0.2]"], "tokens.matched.bins"),
    (["command=teff"], "teff.results"),
    (["command=plot"], "command"),
])
def test_bad_values_fail_before_any_work_naming_the_key(overrides, key, tmp_path):
    with pytest.raises(ConfigError) as error:
        run_analysis(compose("analyze", overrides), tmp_path)
    message = str(error.value)
    assert message.startswith(f"{key}=") and "\n" not in message


def test_a_missing_model_is_named_by_its_own_key(tmp_path):
    from ssd.models import ModelNotFoundError

    cfg = compose("analyze", ["command=tokens", "model=tiny", "ssd.path=/nonexistent/model"])
    with pytest.raises(ModelNotFoundError, match=r"^ssd\.path=/nonexistent/model: no such folder"):
        run_analysis(cfg, tmp_path)


def test_toy_command_prints_the_table_and_writes_figure14(tmp_path):
    result = subprocess.run(
        [sys.executable, "analyze.py", "command=toy", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| quantity | reproduced | paper | unit | match | note |" in result.stdout
    assert "| teacher optimum T | 0.6395 | 0.639 | T | yes |" in result.stdout
    assert "reported numbers reproduced" in result.stdout
    assert (tmp_path / "figure14.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "toy.json").read_text())["matched"] >= 37


def test_entry_script_accepts_a_bare_command_and_fails_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "analyze.py", "teff", f"teff.results=[{tmp_path}/none.json]",
         f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: teff.results: {tmp_path}/none.json does not exist"]
