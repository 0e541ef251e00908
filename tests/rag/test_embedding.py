"""Embedding precision: bfloat16 (where the CPU has it natively) must agree with float32 and keep the ranking."""

from __future__ import annotations

import numpy as np
import pytest

from penwright.errors import LoreError

TEXTS = [
    "Maren Vell keeps the light at Carrow; grey-green eyes, a burn scar across the back of her left hand.",
    "The Widow's Teeth: a reef of black rocks off the point, bared only at the lowest spring tides.",
    "Wreckers show false lanterns on the cliffs to lure ships onto the rocks, then strip the cargo.",
    "Write in the past tense, close third person on Maren; no chapter ever opens with the weather.",
]
QUERIES = ["a woman with a scarred hand who tends a lighthouse", "black rocks uncovered at low tide",
           "lights shown to draw ships to their ruin", "which tense the book uses"]


def test_precision_setting_is_resolved_and_checked(monkeypatch):
    from penwright.rag import embedding
    from penwright.rag.settings import LoreSettings

    assert embedding.resolve_precision("float32") == "float32"
    assert embedding.resolve_precision("bfloat16") == "bfloat16"
    monkeypatch.setattr(embedding, "native_bf16", lambda: False)
    assert embedding.resolve_precision("auto") == "float32"  # emulated bf16 would be slower: keep float32
    monkeypatch.setattr(embedding, "native_bf16", lambda: True)
    assert embedding.resolve_precision("auto") == "bfloat16"
    assert embedding.resolve_precision("auto", device="cuda") == "float32"
    with pytest.raises(LoreError, match="embedding_precision 'half'"):
        embedding.resolve_precision("half")
    with pytest.raises(ValueError):
        LoreSettings(embedding_precision="half")
    assert embedding.PenwrightEmbeddings.build_from_config({"precision": "float32"}).precision == "float32"


def test_bfloat16_vectors_agree_with_float32(embedder):
    from penwright.rag.embedding import PenwrightEmbeddings

    f32 = PenwrightEmbeddings(precision="float32")
    f32._st = embedder._model()  # the same loaded weights; only the arithmetic differs
    b16 = PenwrightEmbeddings(precision="bfloat16")
    b16._st = f32._st
    a, b = f32.encode(TEXTS + QUERIES), b16.encode(TEXTS + QUERIES)
    assert (f32._dtype, b16._dtype) == ("float32", "bfloat16")
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (8, 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.999, cos
    # each query finds its own text under either arithmetic
    for vecs in (a, b):
        assert list((vecs[4:] @ vecs[:4].T).argmax(axis=1)) == [0, 1, 2, 3]
