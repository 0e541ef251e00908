"""A `fast` run on the real 31M base lowers held-out loss on an Austen novel it never saw (slow: minutes on CPU).

Train: continuation pairs from five Austen novels; held out: Persuasion. Prints before/after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from penwright.trainer.settings import ModelSettings

HELD_OUT = "persuasion.txt"
SYSTEM = "You are the author's writing partner. Continue the passage in the author's voice."


def pairs(book: Path, limit: int, words: int = 160) -> list[dict]:
    """Continuation pairs: the previous paragraph is the prompt, the next ~`words` words of prose the target."""
    paras = [" ".join(p.split()) for p in book.read_text(encoding="utf-8").split("\n\n") if len(p.split()) > 25]
    rows, i = [], 1
    while i < len(paras) and len(rows) < limit:
        target, j = [], i
        while j < len(paras) and len(" ".join(target).split()) < words:
            target.append(paras[j])
            j += 1
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": paras[i - 1][-400:]},
                    {"role": "assistant", "content": "\n\n".join(target)},
                ],
                "kind": "continuation",
                "source": book.name,
                "chunk": f"{book.stem}-{i}",
            }
        )
        i = j + 1
    return rows


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_fast_preset_lowers_held_out_austen_loss(corpora, gutenberg_31m, tmp_path):
    from penwright.trainer import data as D
    from penwright.trainer.backends.torch_backend import TorchBackend
    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.train import run_training

    books = sorted((corpora / "austen").glob("*.txt"))
    train = [r for b in books if b.name != HELD_OUT for r in pairs(b, 60)]
    valid = pairs(corpora / "austen" / HELD_OUT, 48)
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (ds / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid))
    settings = load_training_settings("fast", overrides={"max_seq_length": 384, "eval_every": 30, "save_every": 30})
    base = TorchBackend(str(gutenberg_31m), settings, ModelSettings(), "cpu").load()
    samples, _ = D.encode_split(ds / "valid.jsonl", base.tokenizer, 384)
    rows = D.make_rows(samples, 384, packing=True)
    before = base.evaluate([base.collate(rows[i : i + 4]) for i in range(0, len(rows), 4)])
    del base
    result = run_training(ds, settings, gutenberg_31m, tmp_path / "run")
    print(
        f"\nheld-out {HELD_OUT} loss: before {before:.4f}, after {result.eval_loss:.4f} "
        f"({result.steps} steps, {result.stop_reason}, {result.metrics['train_s']:.0f}s training, "
        f"{len(train)} train rows)"
    )
    assert result.eval_loss < before - 0.02
