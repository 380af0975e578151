"""Model sources: the tiny builtin, SmolLM2 converted from its GGUF package, folders, hub ids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ssd.models import ModelNotFoundError, resolve_model_path


def test_tiny_model_is_qwen3_with_head_size_64_and_chatml(tiny_model):
    from transformers import AutoTokenizer

    config = json.loads((Path(tiny_model) / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["head_dim"] == 64
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                         add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("def f(x):\n    return x  # ünïcode")["input_ids"]
    assert tokenizer.decode(ids) == "def f(x):\n    return x  # ünïcode"  # byte-level BPE
    assert resolve_model_path("builtin:tiny") == tiny_model  # cached, not rebuilt


@pytest.mark.slow
def test_smollm2_is_converted_from_the_packaged_gguf():
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    folder = Path(resolve_model_path("builtin:smollm2-135m"))
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and config.head_dim == 64
    with safe_open(folder / "model.safetensors", "pt") as weights:
        names = weights.keys()  # safe_open itself is not iterable
        total = sum(math.prod(weights.get_slice(name).get_shape()) for name in names)
    assert 134e6 < total < 163e6  # 134.5M (+ an untied head copy if the GGUF stores one)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)


def test_local_folder_and_hub_id_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_path(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model_path("Qwen/Qwen3-4B-Instruct-2507") == "Qwen/Qwen3-4B-Instruct-2507"


@pytest.mark.parametrize(("path", "message"), [
    ("builtin:nope", "unknown builtin"),
    ("./missing-folder", "no such folder"),
    ("not a model", "no such folder"),
])
def test_bad_model_paths(path, message):
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model_path(path)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_model_path(str(tmp_path))
