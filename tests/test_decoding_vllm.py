"""ssd.decoding reproduces what vLLM itself applies (logprobs_mode="processed_logprobs").

For many contexts (prompts x teacher-forced positions) and several (T, top-k, top-p, min-p)
settings, including top-k and top-p disabled, vLLM's processed logprobs (the distribution it
actually samples from) must have the same retained support as ssd.decoding applied to the raw
logits of the same model, with probabilities within 1e-4. The raw logits come from transformers
on the same token sequences, so the only shared code is the checkpoint.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SETTINGS = [  # (T, top_k, top_p, min_p)
    (0.7, 20, 0.8, 0.0),
    (1.6, 20, 0.8, 0.0),
    (1.0, 0, 0.9, 0.0),
    (1.3, 50, 1.0, 0.0),
    (0.5, 5, 0.95, 0.0),
    (1.1, 0, 1.0, 0.0),
    (1.0, 0, 1.0, 0.05),
]
STEPS = 6
# Two float32 engines (vLLM and transformers) agree on logits to ~1e-5, so a context whose
# truncation boundary is closer than this is numerically undetermined and is not compared.
BOUNDARY = 1e-5


def at_boundary(raw: torch.Tensor, t: float, top_k: int, top_p: float, min_p: float) -> bool:
    """Whether a token sits within BOUNDARY of the top-k, min-p or top-p cut."""
    z = raw / t
    if 0 < top_k < z.numel():
        kth = z.sort(descending=True).values[top_k - 1]
        if ((z - kth).abs() < BOUNDARY).sum() > 1:
            return True
    probs = z.softmax(-1)
    if min_p and ((probs - min_p * probs.max()).abs() < BOUNDARY * probs.max()).any():
        return True
    if top_p < 1:
        from ssd.decoding import top_k_mask

        kept = torch.where(top_k_mask(z.unsqueeze(0), top_k)[0], z, -torch.inf)
        ascending = kept.softmax(-1).sort().values.cumsum(-1)
        return bool(((ascending - (1 - top_p)).abs() < BOUNDARY).any())
    return False


def _contexts(tiny_model: str):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from ssd.data.prompts import chat_messages
    from ssd.sampling import EngineSettings, get_engine

    llm = get_engine(EngineSettings(
        model=tiny_model, dtype="float32", tensor_parallel_size=1, gpu_memory_utilization=0.9,
        max_model_len=2048, max_num_seqs=None, enforce_eager=True, cpu_kv_cache_gib=1,
        logprobs_mode="processed_logprobs", max_logprobs=-1))
    tokenizer = llm.get_tokenizer()
    statements = [r["problem"] for r in
                  json.loads((REPO / "data/prompts/codeforces_sample.json").read_text())[:6]]
    prompts, params = [], []
    for i, statement in enumerate(statements):
        ids = tokenizer.apply_chat_template(chat_messages(statement[:400]),
                                            add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        for j, (t, k, p, min_p) in enumerate(SETTINGS):
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(temperature=t, top_k=k, top_p=p, min_p=min_p,
                                         max_tokens=STEPS, logprobs=-1, seed=100 * i + j,
                                         ignore_eos=True))
    outputs = llm.generate(prompts, params, use_tqdm=False)
    return outputs, params


def test_reference_decoding_matches_vllm(tiny_model):
    from transformers import AutoModelForCausalLM

    from ssd.decoding import decode

    outputs, params = _contexts(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    checked = undetermined = 0
    worst = 0.0
    for output, param in zip(outputs, params, strict=True):
        completion = output.outputs[0]
        sequence = list(output.prompt_token_ids) + list(completion.token_ids)
        with torch.no_grad():
            logits = model(torch.tensor([sequence])).logits[0].double()
        start = len(output.prompt_token_ids) - 1
        for step, processed in enumerate(completion.logprobs):
            raw = logits[start + step]
            args = dict(temperature=param.temperature, top_k=param.top_k)
            if at_boundary(raw, param.temperature, param.top_k, param.top_p, param.min_p):
                undetermined += 1
                continue
            ref = decode(raw, top_p=param.top_p, min_p=param.min_p, **args)
            vllm_support = {tok for tok, lp in processed.items() if math.isfinite(lp.logprob)}
            assert vllm_support == set(ref.support.nonzero().flatten().tolist()), (
                f"support differs at T={param.temperature} k={param.top_k} p={param.top_p} "
                f"min_p={param.min_p}, step {step}")
            for token in vllm_support:
                diff = abs(math.exp(processed[token].logprob) - float(ref.probs[token]))
                worst = max(worst, diff)
                assert diff < 1e-4
            checked += 1
    total = len(outputs) * STEPS
    assert checked >= 0.9 * total, f"only {checked}/{total} contexts were numerically determined"
    print(f"checked {checked} contexts ({undetermined} at a float boundary); "
          f"max |dp| = {worst:.2e}")
