"""The manifest of a curated training set: provenance, counts, token budgets, problems.

Saved as `manifest.json` next to `train.jsonl`/`valid.jsonl`. The per-file
entries (hash, words, chunks) are what incremental curation and the watcher's
pending-word count compare against.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_VERSION = 1


@dataclass
class FileEntry:
    sha256: str
    bytes: int
    words: int
    paragraphs: int
    scenes: int
    chunks: int = 0
    pairs: int = 0
    train: int = 0
    valid: int = 0
    removed: dict = field(default_factory=dict)  # what cleaning took out, by category
    recomputed: bool = True  # False when this run reused the cached chunks


@dataclass
class Manifest:
    files: dict[str, FileEntry] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)  # {path, line, problem, hint}
    totals: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)  # kind -> rows
    notes: list[str] = field(default_factory=list)  # what fell back, and to what (no FIM tokens, no chat template)
    tokens: dict = field(default_factory=dict)  # {"chunk": stats, "sample": stats + over_context}
    extra_datasets: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    tokenizer: str = ""
    context_limit: int = 0
    fingerprint: str = ""
    dataset_hash: str = ""
    created_at: str = ""
    wall_seconds: float = 0.0
    dry_run: bool = False
    version: int = MANIFEST_VERSION

    @property
    def recomputed(self) -> list[str]:
        return [name for name, f in self.files.items() if f.recomputed]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        files = {k: FileEntry(**v) for k, v in data.pop("files", {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(files=files, **{k: v for k, v in data.items() if k in known})

    @classmethod
    def load_or_none(cls, path: Path) -> Manifest | None:
        try:
            return cls.load(path)
        except (OSError, ValueError, TypeError):
            return None


def budget(values: list[int], limit: int | None = None) -> dict:
    """median / p75 / max (and the share over `limit`) of token counts."""
    if not values:
        out: dict = {"count": 0, "median": 0, "p75": 0, "max": 0}
    else:
        s = sorted(values)
        out = {"count": len(s), "median": s[len(s) // 2], "p75": s[min(len(s) - 1, (3 * len(s)) // 4)], "max": s[-1]}
    if limit is not None:
        over = sum(1 for v in values if v > limit)
        out.update(
            {"limit": limit, "over_limit": over, "share_over_limit": round(over / len(values), 4) if values else 0.0}
        )
    return out
