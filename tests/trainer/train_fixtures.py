"""Tiny JSONL datasets in the curated row format, for the trainer tests (no dependency on curation)."""

from __future__ import annotations

import json
from pathlib import Path

from pwtest import example_texts

EXAMPLE_MANUSCRIPT = Path(__file__).resolve().parents[2] / "examples" / "novel" / "manuscript"
SYSTEM = "You are the author's writing partner. Return only the prose."


def paragraphs(folder: Path) -> list[str]:
    texts = example_texts(folder)
    return [p.strip() for t in texts for p in t.split("\n\n") if len(p.strip()) > 80 and not p.startswith("#")]


def row(i: int, text: str, cut: int = 60) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Continue the passage:\n" + text[:cut]},
            {"role": "assistant", "content": text[cut:]},
        ],
        "kind": "continuation",
        "source": f"chapter-{i % 3}.md",
        "chunk": f"c{i:04d}",
    }


def write_dataset(folder: Path, texts: list[str], n_valid: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [row(i, t) for i, t in enumerate(texts)]
    train, valid = rows[:-n_valid] if n_valid else rows, rows[-n_valid:] if n_valid else []
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    (folder / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps({"rows": len(rows)}))
    return folder
