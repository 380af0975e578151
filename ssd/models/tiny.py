"""A tiny random Qwen3 model with a real byte-level BPE tokenizer, built offline.

It exists so that every engine in the project (vLLM, transformers, Lightning/FSDP) runs for real in
tests on a CPU in seconds. Everything is deterministic: the tokenizer is trained on text the
repository ships, the weights come from a fixed seed.

Shape constraints: vLLM's CPU attention accepts head sizes 32, 64, 80, ... only, so ``head_dim`` is
64. The logits are made deliberately non-uniform (larger init) so that top-k/top-p truncation keeps
a small, varied support, which is what the decoding tests need to be meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Bump when anything below changes: it is part of the cache key.
TINY_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_FILES = ("data/prompts/codeforces_sample.json", "data/prompts/leetcode_sample.json")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
VOCAB_SIZE = 2048
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _corpus() -> list[str]:
    texts: list[str] = []
    for relative in CORPUS_FILES:
        for record in json.loads((REPO_ROOT / relative).read_text()):
            texts.append(record["problem"])
            if record.get("solutions"):
                texts.append(record["solutions"])
    return texts


def _build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<think>", "</think>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(folder)


def build_tiny_model(folder: Path) -> None:
    """Write a tiny Qwen3 checkpoint (safetensors + tokenizer + generation config) to ``folder``."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    _build_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="float32",
    )
    torch.manual_seed(TINY_VERSION)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(folder)
