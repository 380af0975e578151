"""The lab's base model: a small transformer fitted to a world's teacher, built once and cached.

The tokenizer is word-level: one id per special token, per world token ``t0 .. t{V-1}`` and per
prompt word, so a world token is exactly one model token and a completion's text is its tokens
joined by spaces. Its chat template keeps only the user turn (``<|user|> p0 <|assistant|>``): the
stages' system prompts ask for Python code, which means nothing in a lab world.

Fitting is distillation, not sampling: at every position of a batch of prefixes the loss is the
cross-entropy against the teacher's whole next-token distribution (and end-of-turn after
``depth`` tokens), so the fitted model carries no sampling noise, only approximation error. The
prefixes mix teacher samples (the states SSD will visit), uniformly random tokens (every other
state: the teacher depends on the position only) and the success paths (the states the success
probability is made of). The build is seeded and cached under the
world's and the fit's content digest like the other builtin models.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssd.lab.world import RESERVED_WORDS, World
from ssd.models.cache import DEFAULT_CACHE_DIR, cached_build

# Bump when the tokenizer, the architecture or the fitting below changes: part of the cache key.
LAB_BASE_VERSION = 1
SPECIAL_TOKENS = RESERVED_WORDS
PAD, USER, ASSISTANT, END = SPECIAL_TOKENS
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '<|user|> ' + message['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' <|assistant|>' }}{% endif %}"
)


@dataclass(frozen=True)
class FitSettings:
    """How the base is fitted (the ``lab.base`` block)."""

    hidden_size: int = 64
    layers: int = 2
    steps: int = 800
    batch: int = 256
    lr: float = 3e-3
    seed: int = 0


def world_token(index: int) -> str:
    return f"t{index}"


def vocabulary(world: World) -> list[str]:
    """Model vocabulary in id order: specials, world tokens, then every prompt word."""
    prompt_words = [p.text for p in world.prompts]  # one word each, none reserved (build_world)
    return [*SPECIAL_TOKENS, *(world_token(i) for i in range(world.vocab_size)), *prompt_words]


def _save_tokenizer(world: World, folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(vocabulary(world))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=END,
                                   additional_special_tokens=[USER, ASSISTANT])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)


def _teacher_tensor(world: World) -> torch.Tensor:
    """[prompts, depth, V] teacher rows over world tokens."""
    return torch.tensor(np.stack([np.stack([world.teacher_row(p, d) for d in range(world.depth)])
                                  for p in range(len(world.prompts))]), dtype=torch.float32)


def _prefix_batch(teacher: torch.Tensor, success: torch.Tensor, prompt_ids: torch.Tensor,
                  vocab_size: int, batch: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids (prompt + ``depth`` world tokens) and per-position soft targets."""
    n_prompts, depth, v = teacher.shape
    first_world = len(SPECIAL_TOKENS)
    prompt = torch.randint(0, n_prompts, (batch,), generator=generator)
    mode = torch.randint(0, 4, (batch,), generator=generator)  # 0-1 teacher, 2 uniform, 3 success
    tokens = torch.empty(batch, depth, dtype=torch.long)
    for d in range(depth):
        drawn = torch.multinomial(teacher[prompt, d], 1, generator=generator).squeeze(1)
        uniform = torch.randint(0, v, (batch,), generator=generator)
        tokens[:, d] = torch.where(mode < 2, drawn, torch.where(mode == 2, uniform,
                                                                  success[prompt, d]))
    ids = torch.cat([prompt_ids[prompt], first_world + tokens], dim=1)
    target = torch.zeros(batch, depth + 1, vocab_size)
    target[:, :depth, first_world:first_world + v] = teacher[prompt]
    target[:, depth, SPECIAL_TOKENS.index(END)] = 1.0
    return ids, target


def fit_base(world: World, settings: FitSettings, folder: Path) -> None:
    """Write the fitted base (safetensors, tokenizer, generation config) to ``folder``."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    _save_tokenizer(world, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pad_id, end_id = tokenizer.convert_tokens_to_ids([PAD, END])
    # vLLM's CPU attention takes head sizes 32, 64, 80, ...: heads of 32.
    heads = settings.hidden_size // 32
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=settings.hidden_size,
        intermediate_size=4 * settings.hidden_size, num_hidden_layers=settings.layers,
        num_attention_heads=heads, num_key_value_heads=heads,
        head_dim=32, max_position_embeddings=64, tie_word_embeddings=False,
        initializer_range=0.02, bos_token_id=None, eos_token_id=end_id, pad_token_id=pad_id,
        dtype="float32",
    )
    torch.manual_seed(settings.seed)
    model = Qwen3ForCausalLM(config)
    teacher = _teacher_tensor(world)
    # each prompt's first success path: the prefixes the success probability is made of
    success = torch.tensor([world.success_paths(p)[0] for p in range(len(world.prompts))])
    prompt_ids = torch.tensor([tokenizer.apply_chat_template(
        [{"role": "user", "content": p.text}], add_generation_prompt=True, tokenize=True,
        return_dict=False) for p in world.prompts])
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.99),
                                  weight_decay=0.0)
    warmup = max(1, settings.steps // 20)

    def schedule(step: int) -> float:  # linear warm-up, cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, settings.steps - warmup)))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start = prompt_ids.shape[1] - 1  # the position that predicts the first world token
    for _ in range(settings.steps):
        ids, target = _prefix_batch(teacher, success, prompt_ids, len(tokenizer),
                                    settings.batch, generator)
        logits = model(input_ids=ids).logits[:, start:]
        loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_schedule.step()
    model.save_pretrained(folder, safe_serialization=True)
    GenerationConfig(eos_token_id=end_id, pad_token_id=pad_id).save_pretrained(folder)
    (folder / "lab_world.json").write_text(json.dumps(
        {"world": world.name, "world_digest": world.digest(), "fit": asdict(settings),
         "version": LAB_BASE_VERSION}, indent=2))


def base_build_name(world: World, settings: FitSettings) -> str:
    """The cache folder name: the world's name and a digest of everything the weights depend on."""
    payload = json.dumps({"world": world.digest(), "fit": asdict(settings),
                          "version": LAB_BASE_VERSION}, sort_keys=True)
    return f"lab-{world.name}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def fitted_base(world: World, settings: FitSettings, cache_dir: str | Path | None = None) -> Path:
    """The fitted base's folder, fitting it first when it is not in the cache."""
    root = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE_DIR
    return cached_build(root / "models" / base_build_name(world, settings),
                        lambda folder: fit_base(world, settings, folder))


def success_state_rows(folder: str | Path, world: World
                       ) -> tuple[dict[tuple[int, tuple[int, ...]], np.ndarray], list[str]]:
    """The model's next-token distribution at every state along every success path, computed
    with transformers (the lab plans where to sample with it; every reported number is read off
    vLLM). Keys: (prompt index, world tokens so far); rows over the model's vocabulary."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    first_world = vocab.index(world_token(0))
    rows: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    with torch.no_grad():
        for p, prompt in enumerate(world.prompts):
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt.text}],
                                                add_generation_prompt=True, tokenize=True,
                                                return_dict=False)
            for path in world.success_paths(p):
                tokens = torch.tensor([list(ids) + [first_world + t for t in path]])
                probs = model(input_ids=tokens).logits[0, len(ids) - 1:].double().softmax(-1)
                for d in range(world.depth + 1):
                    rows[(p, path[:d])] = probs[d].numpy()
    return rows, vocab
