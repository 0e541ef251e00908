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
QUERIES = [
    "a woman with a scarred hand who tends a lighthouse",
    "black rocks uncovered at low tide",
    "lights shown to draw ships to their ruin",
    "which tense the book uses",
]


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


def test_thread_choice(monkeypatch):
    import builtins
    import io
    import os

    from penwright.rag import embedding

    running = {"now": 1}
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):  # /proc/loadavg as the kernel writes it; the caller is one of "running"
        if path == "/proc/loadavg":
            return io.BytesIO(f"2.61 1.00 0.90 {running['now']}/467 12345\n".encode())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(embedding, "_running_here", lambda: 1)  # only the caller runs in this process
    assert embedding.running_elsewhere() == 0
    assert embedding.free_cores() == 4  # idle now, whatever the load average of the last minute says
    assert embedding.pick_threads("auto", 1) == 4 and embedding.pick_threads("auto", 30) == 4  # every core
    running["now"] = 4
    assert embedding.pick_threads("auto", 1) == 1  # three other threads running (a training run): one thread
    assert embedding.pick_threads("auto", 30) == 1
    monkeypatch.setattr(embedding, "_running_here", lambda: 3)  # ...but two of them are ours (spinning workers)
    assert embedding.running_elsewhere() == 1 and embedding.free_cores() == 3
    running["now"] = 40
    assert embedding.free_cores() == 1
    assert embedding.pick_threads(3, 1) == 3 and embedding.pick_threads(0, 30) == 0  # set explicitly
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(embedding, "running_elsewhere", lambda looks=3: None)  # no /proc: the load average instead
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 1.0, 1.0))
    assert embedding.free_cores() == 1
    monkeypatch.undo()
    assert embedding._running_here() >= 1  # the real /proc: at least this thread is running


def test_intra_op_threads_is_scoped_to_the_block():
    import torch

    from penwright.rag.embedding import intra_op_threads

    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with intra_op_threads(before + 8):  # never more than torch was given
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with intra_op_threads(1):
            raise RuntimeError("a failed forward pass")
    assert torch.get_num_threads() == before


def test_small_batches_and_one_thread_give_the_same_vectors(embedder, monkeypatch):
    """Batch size only changes padding and threads only the order of sums: float32 vectors agree to rounding."""
    from penwright.rag import embedding
    from penwright.rag.embedding import PenwrightEmbeddings

    monkeypatch.setattr(embedding, "_CHUNK_BATCHES", 2)  # batches of 2 in chunks of 4: three chunks, in order

    texts = TEXTS + QUERIES + [" ".join(TEXTS * 3)]  # lengths from 6 to 256 word pieces
    vecs = {}
    for batch, threads in ((64, 0), (2, 1), (8, "auto")):
        emb = PenwrightEmbeddings(precision="float32", batch_size=batch, threads=threads)
        emb._st = embedder._model()
        vecs[(batch, threads)] = np.vstack([emb.encode(texts), emb.encode(texts[:1])])
    ref = vecs[(64, 0)]
    assert ref.shape == (len(texts) + 1, 384)
    for got in vecs.values():
        assert np.abs(got - ref).max() < 1e-4
    assert PenwrightEmbeddings.build_from_config(PenwrightEmbeddings(threads=2).get_config()).threads == 2
