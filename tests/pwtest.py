"""Helpers for tests (importable as `pwtest` from any test module)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`: to prove Penwright changed nothing there."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
