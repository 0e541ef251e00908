"""Resolving a model spec (`builtin:tiny`, a local folder, or a hub id) to something loadable.

Hub ids are resolved from the local Hugging Face cache only when the hub is
offline (HF_HUB_OFFLINE=1); otherwise transformers downloads them as usual.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from penwright.errors import ModelNotFoundError

BUILTIN_TINY = "builtin:tiny"
TINY_PIN = "builtin-tiny.txt"


def resolve_model(spec: str, models_dir: Path, texts: Callable[[], Iterable[str]] | None = None) -> str:
    """Return a local path or hub id for `spec`, building builtin:tiny from `texts()` when asked.

    Raises ModelNotFoundError with what to do when the model cannot be had.
    """
    if spec == BUILTIN_TINY:
        return str(_pinned_tiny(Path(models_dir), texts))
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


def _pinned_tiny(models_dir: Path, texts: Callable[[], Iterable[str]] | None) -> Path:
    """builtin:tiny is built once per project and then pinned.

    Its tokenizer is trained on the manuscript, which changes as the author writes; rebuilding it
    would orphan every adapter trained on the earlier one. So the first build is recorded in
    `models/builtin-tiny.txt` and every later caller (curation, training, serving) gets that one.
    """
    from penwright.trainer.tiny import build_tiny_model

    pin = models_dir / TINY_PIN
    if pin.is_file():
        pinned = models_dir / pin.read_text(encoding="utf-8").strip()
        if (pinned / "config.json").is_file():
            return pinned
    built = build_tiny_model(list(texts()) if texts else [], models_dir)
    tmp = pin.with_suffix(".tmp")
    tmp.write_text(built.name, encoding="utf-8")
    os.replace(tmp, pin)
    return built


def hub_cached(repo_id: str) -> bool:
    """True when a hub model's config is already in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)
