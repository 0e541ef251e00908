"""Batched decode: rows of one adapter selection share a forward pass and get exactly what they get alone.

Every batched result is compared with the same request on a max_batch 1 engine (one sequence per step,
the engine before batching). Requests are submitted from inside `engine.call` (all queued while the
engine thread is busy, so all are prefilled before the first batched step), and mid-decode events
(joins, cancels, hot-swaps) are triggered from a request's `stop_check`, which runs on the engine thread
at a given token: no timing, the same schedule on any machine.
"""

from __future__ import annotations

import contextlib

import pytest
from serving_fixtures import adapters_for, tiny_engine

from penwright.errors import ServeError
from penwright.server.engine import BASE, LIVE, Finished, GenerationRequest, SamplingParams

PROMPTS = [
    "Maren climbed",
    "The lamp was lit and the sea rolled grey under the cliffs. " * 3,
    "Edwin",
    "She said that the rain would come before the boats were home, and it did. " * 8,
]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    return adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())


def engine_with_adapters(model_dir, adapters, max_batch: int):
    eng = tiny_engine(model_dir, max_batch=max_batch)
    for name, path in (("light", adapters["lighthouse"]), ("sail", adapters["sailing"])):
        eng.load_adapter(name, path)
    return eng


@pytest.fixture(scope="module")
def solo(tiny_model_dir, adapters):
    eng = engine_with_adapters(tiny_model_dir, adapters, max_batch=1)
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def batched(tiny_model_dir, adapters):
    eng = engine_with_adapters(tiny_model_dir, adapters, max_batch=8)
    yield eng
    eng.stop()


@contextlib.contextmanager
def forward_shapes(engine):
    """(batch, tokens) of every forward pass the engine runs inside the block (decode steps have tokens == 1)."""
    shapes: list[tuple[int, int]] = []
    hook = engine.backend.model.get_input_embeddings().register_forward_hook(
        lambda _m, inputs, _o: shapes.append(tuple(inputs[0].shape))
    )
    try:
        yield shapes
    finally:
        hook.remove()


def decode_batches(shapes) -> list[int]:
    return [b for b, t in shapes if t == 1]


def at_token(n: int, action):
    """A stop_check that runs `action()` on the engine thread when its request has `n` tokens of text."""
    calls = []

    def check(_text: str):
        calls.append(1)
        if len(calls) == n:
            action()
        return None

    return check


def req(prompt, adapter=BASE, scale=None, stop_check=None, **sampling) -> GenerationRequest:
    return GenerationRequest(
        prompt, SamplingParams(**sampling), adapter=adapter, adapter_scale=scale, stop_check=stop_check
    )


def submit_together(engine, requests: list[GenerationRequest]) -> list:
    """Queue all requests while the engine thread is busy: they are admitted before its next decode step."""
    return engine.call(lambda: [engine.submit(r) for r in requests])


def alone(engine, r: GenerationRequest) -> tuple[str, Finished]:
    plain = GenerationRequest(r.prompt, r.sampling, adapter=r.adapter, adapter_scale=r.adapter_scale)
    return engine.submit(plain).text(60)


def test_greedy_rows_joining_and_leaving_match_alone(solo, batched):
    late: list = []
    wave2 = [req(PROMPTS[3], max_tokens=20), req(PROMPTS[0] + " the", max_tokens=8)]
    wave1 = [
        req(PROMPTS[0], max_tokens=40, stop_check=at_token(6, lambda: late.extend(batched.submit(r) for r in wave2))),
        req(PROMPTS[1], max_tokens=12),
        req(PROMPTS[2], max_tokens=30),
    ]
    with forward_shapes(batched) as shapes:
        first = submit_together(batched, wave1)
        got = [ch.text(60) for ch in first]
        got += [ch.text(60) for ch in late]
    want = [alone(solo, r) for r in wave1 + wave2]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1].completion_tokens for g in got] == [w[1].completion_tokens for w in want]
    steps = decode_batches(shapes)
    assert [b for b, t in shapes if t > 1] == [3, 2], "each wave is prefilled in one pass"
    assert steps[0] == 3, "the first wave decodes together"
    assert max(steps) == 5, "the second wave joined the running first wave"
    assert len(steps) < sum(w[1].completion_tokens for w in want) - len(want)  # fewer passes than tokens
    assert batched.status()["batches"] == [] and batched.status()["active"] == 0


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(solo, batched):
    rs = [
        req(PROMPTS[0], max_tokens=24, temperature=1.0, seed=7),
        req(PROMPTS[1], max_tokens=24, temperature=0.8, top_p=0.9, seed=11),
        req(PROMPTS[2], max_tokens=24, temperature=0.7, seed=3, repetition_penalty=1.3),
        req(PROMPTS[0], max_tokens=24, frequency_penalty=0.5, presence_penalty=0.3),
        req(PROMPTS[3], max_tokens=24),
    ]
    got = [ch.text(60)[0] for ch in submit_together(batched, rs)]
    want = [alone(solo, r)[0] for r in rs]
    assert got == want
    assert len(set(got[:3])) == 3


def test_cancelled_row_leaves_and_the_others_finish_as_alone(solo, batched):
    chans: list = []
    rs = [
        req(PROMPTS[0], max_tokens=30),
        req(PROMPTS[1], max_tokens=30, stop_check=at_token(5, lambda: chans[2].cancel())),
        req(PROMPTS[2], max_tokens=300),
        req(PROMPTS[3], max_tokens=30),
    ]
    chans.extend(submit_together(batched, rs))
    got = [ch.text(60) for ch in chans]
    want = [alone(solo, r) for r in rs]
    assert got[2][1].finish_reason == "cancelled" and got[2][1].completion_tokens <= 6
    assert want[2][0].startswith(got[2][0])
    for i in (0, 1, 3):
        assert got[i][0] == want[i][0] and got[i][1].finish_reason == want[i][1].finish_reason
    assert batched.status()["active"] == 0


def test_a_failing_row_fails_alone(solo, batched):
    def boom():
        raise RuntimeError("stop check broke")

    rs = [
        req(PROMPTS[0], max_tokens=20),
        req(PROMPTS[1], max_tokens=20, stop_check=at_token(3, boom)),
        req(PROMPTS[2], max_tokens=20),
    ]
    chans = submit_together(batched, rs)
    with pytest.raises(ServeError, match="stop check broke"):
        chans[1].text(60)
    assert [chans[i].text(60)[0] for i in (0, 2)] == [alone(solo, rs[i])[0] for i in (0, 2)]
    assert batched.running


def test_adapter_groups_take_turns_without_mixing(solo, batched):
    seen: list = []
    spec = [("light", None), ("sail", None), (BASE, None), ("light", 0.5), ("light", None), ("sail", None)]
    rs = [req(PROMPTS[i % 3], adapter=ad, scale=sc, max_tokens=16) for i, (ad, sc) in enumerate(spec)]
    rs[0].stop_check = at_token(3, lambda: seen.append(sorted(batched.status()["batches"])))
    got = [ch.text(60) for ch in submit_together(batched, rs)]
    want = [alone(solo, r) for r in rs]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1].adapter for g in got] == ["light", "sail", None, "light", "light", "sail"]
    assert seen == [[1, 1, 2, 2]]  # light x2, sail x2, base, light at 0.5: four selections


def test_max_batch_and_prefill_tokens_cap_each_pass(tiny_model_dir, solo):
    eng = tiny_engine(tiny_model_dir, max_batch=2, prefill_tokens=100)
    rs = [req(p, max_tokens=10) for p in PROMPTS + PROMPTS[:1]]
    try:
        with forward_shapes(eng) as shapes:
            got = [ch.text(60)[0] for ch in submit_together(eng, rs)]
    finally:
        eng.stop()
    assert got == [alone(solo, r)[0] for r in rs]
    assert max(decode_batches(shapes)) == 2
    prefills = [(b, t) for b, t in shapes if t > 1]
    assert len(prefills) < len(rs) and all(b == 1 or b * t <= 100 for b, t in prefills)


def test_hot_swap_during_batched_streams(tiny_model_dir, adapters, solo):
    """The live adapter merged (the CUDA default), three batched streams, a promotion at a stream's 5th token."""
    from penwright.server.engine import Engine, make_backend

    eng = Engine(make_backend(str(tiny_model_dir), backend="cpu", merge_live=True)).start(timeout=120)
    for name, path in (("v1", adapters["lighthouse"]), ("v2", adapters["sailing"])):
        solo.load_adapter(name, path)
    try:
        eng.set_live("v1", adapters["lighthouse"])
        after: list = []

        def promote():
            eng.set_live("v2", adapters["sailing"])  # on the engine thread, between two steps' tokens
            after.extend(eng.submit(req(p, adapter=LIVE, max_tokens=20)) for p in PROMPTS[:2])

        rs = [
            req(PROMPTS[0], adapter=LIVE, max_tokens=40, stop_check=at_token(5, promote)),
            req(PROMPTS[1], adapter=LIVE, max_tokens=40),
            req(PROMPTS[3], adapter=LIVE, max_tokens=12),
        ]
        got = [ch.text(60) for ch in submit_together(eng, rs)]
        new = [ch.text(60) for ch in after]
        assert [f.adapter for _, f in got] == ["v1"] * 3 and [f.adapter for _, f in new] == ["v2"] * 2
        assert [t for t, _ in got] == [
            alone(solo, req(r.prompt, adapter="v1", max_tokens=r.sampling.max_tokens))[0] for r in rs
        ]
        assert [t for t, _ in new] == [alone(solo, req(p, adapter="v2", max_tokens=20))[0] for p in PROMPTS[:2]]
        assert eng.stats.failed == 0
        assert eng.call(lambda: eng.adapters()) == ["v2"]  # v1 unloaded once its last row finished
        assert eng.submit(req(PROMPTS[0], adapter=LIVE, max_tokens=20)).text(60)[0] == new[0][0]
        assert eng.status()["merged_adapter"] == "v2"
    finally:
        eng.stop()
        solo.unload("v1")
        solo.unload("v2")
