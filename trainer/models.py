"""Resolving a model spec (`builtin:tiny`, a local folder, or a hub id) to something loadable.

Hub ids are resolved from the local Hugging Face cache only when the hub is
offline (HF_HUB_OFFLINE=1); otherwise transformers downloads them as usual.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from penwright.errors import ModelNotFoundError

BUILTIN_TINY = "builtin:tiny"


def resolve_model(spec: str, models_dir: Path, texts: Callable[[], Iterable[str]] | None = None) -> str:
    """Return a local path or hub id for `spec`, building builtin:tiny from `texts()` when asked.

    Raises ModelNotFoundError with what to do when the model cannot be had.
    """
    if spec == BUILTIN_TINY:
        from penwright.trainer.tiny import build_tiny_model

        return str(build_tiny_model(list(texts()) if texts else [], models_dir))
    if spec.startswith("builtin:"):
        raise ModelNotFoundError(spec, "the only builtin model is builtin:tiny")
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(spec, f"{local} has no config.json")
        return str(local.resolve())
    if spec.startswith((".", "/", "~")):
        raise ModelNotFoundError(spec, "no such folder")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not hub_cached(spec):
        raise ModelNotFoundError(spec, "offline and not in the Hugging Face cache")
    return spec


def hub_cached(repo_id: str) -> bool:
    """True when a hub model's config is already in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)
