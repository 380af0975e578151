"""The analyze stage: validate an ``analyze.yaml`` composition and run one analysis command.

Why a separate module: ``analyze.py`` stays a thin Hydra main (compose, pick the output folder,
turn user mistakes into one-line errors), while this module holds the glue between a config and
the pure analyses in ``toy``, ``tokens`` and ``teff``, so the tests can run every command
in-process on a composed config. Each command writes its figures and one JSON of all its numbers
into ``out`` and prints a table.

    command=toy      toy.json, figure14.png
    command=tokens   tokens.json, contexts.jsonl, tokens.png, entropy_decomposition.png
    command=teff     teff.json, teff.png
    command=decontaminate   decontamination.json (a prompt pool against evaluation sets)
    command=transfer transfer.md, transfer.json (Table 5: two transfer suites, base vs SSD)
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from ssd import config as checks
from ssd.analysis import teff, tokens, toy
from ssd.analysis.decontamination import run_decontaminate
from ssd.analysis.transfer import run_transfer
from ssd.config import ConfigError, is_int, is_number, require
from ssd.data.decontamination import EvalSetLoader
from ssd.data.prompts import DataError, chat_messages, load_pool
from ssd.records import read_records
from ssd.sampling import chat_prompt_ids, sample_seed
from ssd.tables import markdown_table

COMMANDS = ("toy", "tokens", "teff", "decontaminate", "transfer")


def run_analysis(cfg: DictConfig, out: str | Path, eval_sets: EvalSetLoader | None = None
                 ) -> dict[str, Any]:
    """Validate ``cfg.command`` and run it, writing into ``out``; returns the JSON's payload.
    ``eval_sets`` loads evaluation sets (command=decontaminate; the entry script passes it)."""
    command = require(cfg, "command", lambda v: v in COMMANDS, "one of " + ", ".join(COMMANDS))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if command == "decontaminate":
        payload = run_decontaminate(cfg, eval_sets)
        _write_json(folder / "decontamination.json", payload)
        return payload
    if command == "transfer":
        payload = run_transfer(cfg, folder)
        _write_json(folder / "transfer.json", payload)
        return payload
    runner = {"toy": run_toy, "tokens": run_tokens, "teff": run_teff}[command]
    return runner(cfg, folder)


def _finite(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively, so the JSON is strict."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# command=toy
# --------------------------------------------------------------------------------------------


def run_toy(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Print the toy's reproduced-vs-paper table and write Figure 14 (closed form, seconds)."""
    rows = toy.reproduction_table()
    matched = sum(r.ok for r in rows)
    print(toy.format_table(rows))
    print(f"\n{matched}/{len(rows)} reported numbers reproduced; known discrepancies: "
          + "; ".join(toy.KNOWN_DISCREPANCIES))
    figure = toy.plot_figure14(out / "figure14.png")
    payload = {"rows": [asdict(r) for r in rows], "matched": matched, "total": len(rows),
               "known_discrepancies": toy.KNOWN_DISCREPANCIES, "figure": str(figure)}
    _write_json(out / "toy.json", payload)
    return payload


# --------------------------------------------------------------------------------------------
# command=tokens
# --------------------------------------------------------------------------------------------


def _is_temperature_list(value: Any) -> bool:
    return (isinstance(value, ListConfig | list) and len(value) > 0
            and all(is_number(v) and v > 0 for v in value))


def _optional_top_k(value: Any) -> bool:
    return value is None or (is_int(value) and value >= 0)


def _is_bin_edges(value: Any) -> bool:
    edges = list(value) if isinstance(value, ListConfig | list) else []
    return (len(edges) >= 2 and all(is_number(v) and 0 <= v <= 1 for v in edges)
            and all(a < b for a, b in itertools.pairwise(edges)))


def validate_tokens(cfg: DictConfig) -> None:
    """Every key command=tokens reads, checked before any model is loaded."""
    for key in ("base.path", "ssd.path"):
        require(cfg, key, lambda v: isinstance(v, str) and v.strip() != "",
               "a builtin (builtin:tiny, builtin:smollm2-135m), a local HF folder or a hub id")
    checks.check_model(cfg)
    checks.check_truncation(cfg)
    samples = require(cfg, "tokens.samples",
                     lambda v: v is None or (isinstance(v, str) and Path(v).is_file()),
                     "null (sample from the base model) or an existing samples.jsonl file")
    if samples is None:
        checks.check_data(cfg)
    else:
        require(cfg, "data.limit", lambda v: v is None or (is_int(v) and v >= 1),
               "an integer >= 1, or null for every record")
    require(cfg, "tokens.max_new_tokens", lambda v: is_int(v) and v >= 1,
           "an integer >= 1 (continuation tokens per prompt)")
    require(cfg, "tokens.continuation.T", lambda v: is_number(v) and v >= 0,
           ">= 0 (0 samples greedily)")
    require(cfg, "tokens.continuation.top_k", _optional_top_k, "an integer >= 0 (0 disables)")
    require(cfg, "tokens.continuation.top_p", lambda v: is_number(v) and 0 < v <= 1,
           "in (0, 1] (1.0 disables top-p)")
    require(cfg, "tokens.continuation.seed", is_int, "an integer")
    require(cfg, "tokens.t_grid", _is_temperature_list,
           "a non-empty list of temperatures > 0, e.g. [0.5,1.0,1.5]")
    require(cfg, "tokens.ranks", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    require(cfg, "tokens.support.T", lambda v: is_number(v) and v > 0,
           "> 0 (the training-time temperature that defines S_s)")
    require(cfg, "tokens.support.top_k", _optional_top_k, "an integer >= 0 (0 disables)")
    require(cfg, "tokens.support.top_p", lambda v: is_number(v) and 0 < v <= 1,
           "in (0, 1] (1.0 disables top-p)")
    require(cfg, "tokens.lock_max_support", lambda v: is_int(v) and v >= 1,
           "an integer >= 1 (|S_s| at or below it is lock-like)")
    require(cfg, "tokens.matched.k", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    require(cfg, "tokens.matched.tolerance", lambda v: is_number(v) and 0 <= v <= 1,
           "in [0, 1] (largest top-k mass difference that counts as matched)")
    require(cfg, "tokens.matched.T", lambda v: is_number(v) and v > 0, "> 0")
    require(cfg, "tokens.matched.bins", _is_bin_edges,
           "an increasing list of at least 2 masses in [0, 1]")


def token_settings(cfg: DictConfig) -> tokens.TokenSettings:
    """The measures' settings from a validated config."""
    t, s, m = cfg.truncation, cfg.tokens.support, cfg.tokens.matched
    return tokens.TokenSettings(
        t_grid=tuple(float(v) for v in cfg.tokens.t_grid),
        top_k=int(t.top_k or 0), top_p=float(t.top_p), min_p=float(t.min_p or 0.0),
        support_t=float(s.T), support_top_k=int(s.top_k or 0), support_top_p=float(s.top_p),
        ranks=int(cfg.tokens.ranks), lock_max_support=int(cfg.tokens.lock_max_support),
        matched_k=int(m.k), matched_tolerance=float(m.tolerance), matched_t=float(m.T),
        matched_bins=tuple(float(v) for v in m.bins),
    )


def _stop_ids(tokenizer: Any, model: Any) -> set[int]:
    """Tokens that end a continuation: the tokenizer's EOS and the model's (an int or a list)."""
    flat: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            flat.add(value)
        elif isinstance(value, Iterable):
            flat.update(int(v) for v in value)
    return flat


def sampled_continuations(cfg: DictConfig, tokenizer: Any, model: Any
                          ) -> list[tokens.Continuation]:
    """One seeded continuation per pool prompt, sampled from the base model."""
    pool = load_pool(cfg.data.path, cfg.data.field, cfg.data.limit)
    c = cfg.tokens.continuation
    stops = _stop_ids(tokenizer, model)
    items = []
    for prompt in pool.prompts:
        ids = chat_prompt_ids(tokenizer, chat_messages(prompt.statement))
        new = tokens.sample_continuation(
            model, ids, int(cfg.tokens.max_new_tokens), float(c.T), int(c.top_k or 0),
            float(c.top_p), sample_seed(int(c.seed), prompt.prompt_id, 0), stops)
        items.append(tokens.Continuation(prompt.prompt_id, tuple(ids), tuple(new)))
    return items


def continuation_from_record(record: Any, tokenizer: Any, max_new_tokens: int
                             ) -> tokens.Continuation | None:
    """A samples.jsonl or train.jsonl record: its token ids as sampled when it has them (a
    generate.py record), else its text (messages + completion, or messages ending with the
    assistant turn), tokenised here. Returns None for an empty completion."""
    if isinstance(record, Mapping) and "completion_token_ids" in record:
        prompt, completion = record.get("prompt_token_ids"), record.get("completion_token_ids")
        if not (isinstance(prompt, list) and isinstance(completion, list)):
            raise DataError("needs 'prompt_token_ids' and 'completion_token_ids' (lists of ids)")
        ids = [int(i) for i in completion][:max_new_tokens]
        return (tokens.Continuation(str(record.get("prompt_id") or ""),
                                    tuple(int(i) for i in prompt), tuple(ids)) if ids else None)
    messages = record.get("messages") if isinstance(record, Mapping) else None
    completion = record.get("completion") if isinstance(record, Mapping) else None
    if isinstance(messages, list) and completion is None and messages \
            and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant":
        messages, completion = messages[:-1], messages[-1].get("content")
    if not isinstance(messages, list) or not isinstance(completion, str):
        raise DataError("needs token ids, or 'messages' (a chat list) and 'completion' (text), "
                        "or messages ending with the assistant turn")
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"][:max_new_tokens]
    if not ids:
        return None
    prompt_id = str(record.get("prompt_id") or "")
    return tokens.Continuation(prompt_id, tuple(chat_prompt_ids(tokenizer, messages)),
                               tuple(int(i) for i in ids))


def recorded_continuations(cfg: DictConfig, tokenizer: Any) -> list[tokens.Continuation]:
    """Up to ``data.limit`` non-empty completions of ``tokens.samples``, in file order."""
    path = Path(cfg.tokens.samples)
    limit = cfg.data.limit
    items: list[tokens.Continuation] = []
    records = read_records(path)
    index = 0
    while limit is None or len(items) < limit:
        try:
            record = next(records)
        except StopIteration:
            break
        except ValueError as error:  # read_records names the file and line
            raise DataError(f"tokens.samples: {error}") from None
        try:
            item = continuation_from_record(record, tokenizer, int(cfg.tokens.max_new_tokens))
        except DataError as error:
            raise DataError(f"tokens.samples={path}: record {index} {error}") from None
        if item is not None:
            items.append(item)
        index += 1
    if not items:
        raise DataError(f"tokens.samples={path}: no record with a non-empty completion")
    return items


def _resolve(cfg: DictConfig, key: str) -> str:
    """resolve_model_path, with its error naming ``key`` (it says model.path otherwise)."""
    from ssd.models import ModelNotFoundError, resolve_model_path

    value = OmegaConf.select(cfg, key)
    try:
        return resolve_model_path(value)
    except ModelNotFoundError as error:
        message = str(error).removeprefix(f"model.path={value}: ")
        raise ModelNotFoundError(f"{key}={value}: {message}") from None


def run_tokens(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Figure 6 and Eq. 30 for base vs SSD on the same teacher-forced continuations."""
    from transformers import AutoTokenizer

    validate_tokens(cfg)
    settings = token_settings(cfg)
    base_path = _resolve(cfg, "base.path")
    ssd_path = _resolve(cfg, "ssd.path")
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    base_model = tokens.load_causal_lm(base_path, cfg.model.dtype)
    ssd_model = (base_model if ssd_path == base_path
                 else tokens.load_causal_lm(ssd_path, cfg.model.dtype))
    if cfg.tokens.samples:
        items = recorded_continuations(cfg, tokenizer)
        source = {"samples": str(cfg.tokens.samples)}
    else:
        items = sampled_continuations(cfg, tokenizer, base_model)
        source = {"sampled_from": "base",
                  **OmegaConf.to_container(cfg.tokens.continuation, resolve=True)}
    try:
        base, ssd, support_size, labels = tokens.analyse_continuations(
            base_model, ssd_model, items, settings)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    summary = tokens.summarise(base, ssd, support_size, settings)
    payload = {
        "base": {"path": cfg.base.path, "resolved": base_path},
        "ssd": {"path": cfg.ssd.path, "resolved": ssd_path},
        "continuations": {**source, "prompts": len(items),
                          "max_new_tokens": int(cfg.tokens.max_new_tokens)},
        "settings": asdict(settings),
        **summary,
    }
    _write_json(out / "tokens.json", payload)
    with open(out / "contexts.jsonl", "w") as handle:
        for row in tokens.context_rows(base, ssd, support_size, labels):
            handle.write(json.dumps(_finite(row)) + "\n")
    tokens.plot_tokens(summary, out / "tokens.png")
    tokens.plot_entropy_decomposition(summary, out / "entropy_decomposition.png")
    print(tokens.format_summary(summary, settings))
    print(f"\nwrote {out}/tokens.json, contexts.jsonl, tokens.png, entropy_decomposition.png")
    return payload


# --------------------------------------------------------------------------------------------
# command=teff
# --------------------------------------------------------------------------------------------


def truncation_label(truncation: Any) -> str:
    """A curve name for a record's truncation: a string as is, {top_k, top_p} spelled out."""
    if isinstance(truncation, Mapping):
        k, p = truncation.get("top_k") or 0, truncation.get("top_p")
        p = 1.0 if p is None else float(p)
        if k == 0 and p >= 1.0:
            return "no truncation"
        parts = ([f"top-k={k}"] if k else []) + ([f"top-p={p:g}"] if p < 1.0 else [])
        return ", ".join(parts)
    return str(truncation)


def result_record(raw: Any, where: str) -> teff.ResultRecord:
    """One evaluation record -> ResultRecord; ``where`` (file and index) goes into the error."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"teff.results: {where} is not a JSON object")
    metrics = raw.get("metrics") if isinstance(raw.get("metrics"), Mapping) else {}
    pass_at_1 = next((d[key] for d in (raw, metrics) for key in ("pass@1", "pass_at_1")
                      if d.get(key) is not None), None)
    group = raw.get("group")
    if group is None and raw.get("truncation") is not None:
        group = truncation_label(raw["truncation"])
    values = {"t_train": raw.get("t_train"), "t_eval": raw.get("t_eval"), "pass@1": pass_at_1}
    bad = [k for k, v in values.items() if not (is_number(v) and math.isfinite(v))]
    if bad:
        raise ConfigError(f"teff.results: {where} lacks a number for {', '.join(bad)} "
                          "(fields: t_train, t_eval, pass@1, group or truncation)")
    if values["t_train"] <= 0 or values["t_eval"] <= 0:
        raise ConfigError(f"teff.results: {where} has a temperature <= 0")
    return teff.as_record({"t_train": values["t_train"], "t_eval": values["t_eval"],
                           "pass_at_1": pass_at_1, "group": group})


def _records_in_file(path: Path) -> list[tuple[Any, str]]:
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return [(json.loads(line), f"{path}:{number}")
                    for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"teff.results: {path} is not valid JSON ({error.msg})") from None
    if isinstance(data, list):
        return [(item, f"{path}[{i}]") for i, item in enumerate(data)]
    return [(data, str(path))]


def load_result_records(paths: Iterable[str | Path]) -> list[teff.ResultRecord]:
    """Read every record under ``paths`` (files, or folders searched for metrics.json)."""
    records = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = sorted(path.rglob("metrics.json"))
            if not files:
                raise ConfigError(f"teff.results: folder {path} holds no metrics.json")
        elif path.is_file():
            files = [path]
        else:
            raise ConfigError(f"teff.results: {path} does not exist")
        for file in files:
            records += [result_record(raw, where) for raw, where in _records_in_file(file)]
    if not records:
        raise ConfigError("teff.results: the files hold no records")
    return records


def run_teff(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Quadratic fits of pass@1 against T_eff per group, plotted as Figure 3a."""
    results = require(cfg, "teff.results",
                     lambda v: isinstance(v, ListConfig | list) and len(v) > 0,
                     "a non-empty list of result files or folders, e.g. [runs/evaluate]")
    baseline = require(cfg, "teff.baseline", lambda v: v is None or is_number(v),
                      "null or a number (the base model's pass@1)")
    records = load_result_records(list(results))
    fits = teff.fit_groups(records)
    figure = teff.plot_teff(records, out / "teff.png", baseline=baseline, fits=fits)
    rows = teff.summary_rows(fits)
    payload = {"records": [asdict(r) | {"t_eff": r.t_eff} for r in records],
               "fits": rows, "baseline": baseline, "figure": str(figure)}
    _write_json(out / "teff.json", payload)
    print(markdown_table(
        ["group", "n", "R²", "shape", "peak T_eff", "peak pass@1", "note"],
        [[r["group"], r["n"], f"{r['r_squared']:.3f}", r["shape"],
          "-" if r["peak_t_eff"] is None else f"{r['peak_t_eff']:.3f}",
          "-" if r["peak_value"] is None else f"{r['peak_value']:.4f}", r["note"]]
         for r in rows]))
    return payload
