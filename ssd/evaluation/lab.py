"""Lab benchmarks (``eval.format=lab``): a completion passes when it is one of its prompt's answers.

A lab benchmark file is JSONL, one problem per line: ``{question_id, prompt, answers}`` with the
answers as text (world tokens joined by spaces), written by the lab driver from a world. Nothing
runs in the sandbox: the verdict is a comparison, and a completion passes only when the model
ended it (``finish_reason == "stop"``), so an answer's tokens followed by anything, or cut at
``max_tokens``, fail.

Besides the sampled verdicts, ``exact_success`` reads each problem's exact pass probability off the
engine itself: for every state along every answer it asks vLLM for the whole next-token
distribution after the evaluation decoding (the engine runs with ``processed_logprobs``:
temperature, top-k and top-p applied, truncated tokens at probability 0), and multiplies along the
answer, end-of-turn included. It also records the raw distribution at each state (vLLM's prompt
logprobs are never processed), from which the lab computes the model's whole P(T) curve.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ssd.evaluation.benchmarks import Problem
from ssd.evaluation.checking import Verdict

PLATFORM = "lab"
LOGPROBS_MODE = "processed_logprobs"
ALL_LOGPROBS = -1  # vLLM: the whole vocabulary


def load_lab(path: str | Path) -> list[Problem]:
    """Problems of a lab benchmark file (see the module docstring)."""
    problems = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        answers = row.get("answers")
        if not (isinstance(row.get("question_id"), str) and isinstance(row.get("prompt"), str)
                and isinstance(answers, list) and answers
                and all(isinstance(a, str) for a in answers)):
            raise ValueError(f"line {number}: needs question_id, prompt and a non-empty list of "
                             "answers (strings)")
        problems.append(Problem(
            question_id=row["question_id"], title=row["question_id"], content=row["prompt"],
            platform=PLATFORM, contest_date=None, difficulty=row.get("difficulty"),
            starter_code="", tests=[], func_name=None,
            answers=tuple(" ".join(a.split()) for a in answers)))
    return problems


def lab_messages(problem: Problem) -> list[dict[str, str]]:
    """The prompt as the world's only user turn (the lab model's template shows nothing else)."""
    return [{"role": "user", "content": problem.content}]


def exact_verdict(problem: Problem, completion: str, finish_reason: str | None) -> Verdict:
    """Pass when the model ended the completion and its text is one of the answers."""
    if finish_reason is not None and finish_reason != "stop":
        return Verdict(False, "not_ended", f"finish_reason {finish_reason}", 0, 1)
    if " ".join(completion.split()) not in problem.answers:
        return Verdict(False, "wrong_answer", completion[:80], 0, 1)
    return Verdict(True, None, "", 1, 1)


def _row(logprobs: dict[int, Any], vocab_size: int) -> list[float]:
    """A whole-vocabulary probability row from vLLM's {token id: Logprob}."""
    row = [0.0] * vocab_size
    for token, entry in logprobs.items():
        row[token] = math.exp(entry.logprob) if entry.logprob > -math.inf else 0.0
    return row


def exact_success(llm: Any, problems: list[Problem], prompts: dict[str, list[int]],
                  params: Any) -> dict[str, Any]:
    """Each problem's exact pass probability under ``params`` (one-token SamplingParams with
    whole-vocabulary logprobs), and the raw and decoded rows at every answer state."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    end = tokenizer.eos_token_id
    answer_ids = {p.question_id: [tokenizer.encode(a, add_special_tokens=False)
                                  for a in p.answers] for p in problems}
    # Decoded rows: one request per distinct state (a prompt and an answer prefix).
    states = sorted({(p.question_id, tuple(ids[:d])) for p in problems
                     for ids in answer_ids[p.question_id] for d in range(len(ids) + 1)})
    outputs = llm.generate([TokensPrompt(prompt_token_ids=prompts[q] + list(prefix))
                            for q, prefix in states], params, use_tqdm=False)
    decoded = {state: _row(out.outputs[0].logprobs[0], len(vocab))
               for state, out in zip(states, outputs, strict=True)}
    # Raw rows: the prompt logprobs of each whole answer (end of turn included), one pass each.
    raw_params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=ALL_LOGPROBS)
    answers = [(p.question_id, tuple(ids)) for p in problems for ids in answer_ids[p.question_id]]
    outputs = llm.generate([TokensPrompt(prompt_token_ids=prompts[q] + list(ids) + [end])
                            for q, ids in answers], raw_params, use_tqdm=False)
    raw: dict[tuple[str, tuple[int, ...]], list[float]] = {}
    for (qid, ids), out in zip(answers, outputs, strict=True):
        start = len(prompts[qid])
        for d in range(len(ids) + 1):
            raw[(qid, ids[:d])] = _row(out.prompt_logprobs[start + d], len(vocab))

    per_problem: dict[str, Any] = {}
    for problem in problems:
        qid = problem.question_id
        total = 0.0
        for ids in answer_ids[qid]:
            path = [*ids, end]
            total += math.prod(decoded[(qid, tuple(ids[:d]))][t] for d, t in enumerate(path))
        per_problem[qid] = {
            "exact": total,
            "states": [{"prefix": tokenizer.decode(list(prefix)), "raw": raw[(q, prefix)],
                        "decoded": decoded[(q, prefix)]}
                       for q, prefix in states if q == qid],
        }
    mean = sum(v["exact"] for v in per_problem.values()) / len(per_problem)
    return {"pass@1": mean, "vocab": vocab, "end_token": vocab[end], "problems": per_problem}
