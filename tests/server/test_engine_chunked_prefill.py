"""Chunked prefill: a long prompt that arrives while another stream decodes is prefilled in pieces, and the running
stream takes a decode step between pieces instead of waiting for one long pass.

The long request is submitted from the running stream's `stop_check` (it runs on the engine thread at a given
token), and mid-prefill events (cancel, hot-swap) are triggered the same way: every test has the same schedule
on any machine, and asserts on the order of events, never on time. Results are compared with the same request
on a max_batch 1 engine (one sequence at a time, one prefill pass).
"""

from __future__ import annotations

import pytest
from serving_fixtures import adapters_for, tiny_engine

from penwright.errors import ServeError
from penwright.server.engine import BASE, LIVE, Engine, Finished, GenerationRequest, SamplingParams, make_backend

CHUNK = 64
SHORT = "Maren climbed"
LONG = "The lamp was lit and the sea rolled grey under the cliffs. " * 40  # 641 tokens: 11 pieces of 64


@pytest.fixture(scope="module")
def solo(tiny_model_dir):
    eng = tiny_engine(tiny_model_dir, max_batch=1)
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def chunked(tiny_model_dir):
    eng = tiny_engine(tiny_model_dir, max_batch=8, prefill_chunk=CHUNK)
    yield eng
    eng.stop()


def req(prompt, adapter=BASE, stop_check=None, **sampling) -> GenerationRequest:
    return GenerationRequest(prompt, SamplingParams(**sampling), adapter=adapter, stop_check=stop_check)


def alone(engine, r: GenerationRequest) -> tuple[str, Finished]:
    return engine.submit(GenerationRequest(r.prompt, r.sampling, adapter=r.adapter)).text(60)


def recorder(events: list, name: str, actions: dict | None = None):
    """A stop_check that appends `name` to `events` at each token and runs actions[n]() at the n-th."""
    calls: list = []

    def check(_text: str):
        calls.append(1)
        events.append(name)
        if actions and len(calls) in actions:
            actions[len(calls)]()
        return None

    return check


def long_during_stream(engine, long: GenerationRequest, later: dict | None = None, running_tokens: int = 60):
    """A running stream; at its 3rd token `long` arrives; later[n](long's channel) runs at its n-th token.
    Returns (running result, long channel, events): "r" per running token, "submit", "L" per long token."""
    events: list = []
    late: list = []

    def arrive():
        events.append("submit")
        late.append(engine.submit(long))

    actions = {3: arrive} | {n: (lambda fn=fn: fn(late[0])) for n, fn in (later or {}).items()}
    long.stop_check = recorder(events, "L")
    got = engine.submit(req(SHORT, max_tokens=running_tokens, stop_check=recorder(events, "r", actions))).text(60)
    return got, late[0], events


def prefill_passes(engine):
    """Forward passes of more than one token (prefills and pieces), recorded as (batch, tokens)."""
    shapes: list = []
    hook = engine.backend.model.get_input_embeddings().register_forward_hook(
        lambda _m, inputs, _o: shapes.append(tuple(inputs[0].shape))
    )
    return shapes, hook


def test_a_running_stream_decodes_between_the_pieces_and_tokens_match_one_pass(tiny_model_dir, solo, chunked):
    long = chunked.encode(LONG)[:600]  # 9 pieces of 64, then 24
    shapes, hook = prefill_passes(chunked)
    try:
        (text, fin), ch, events = long_during_stream(chunked, req(long, max_tokens=20))
        long_text, long_fin = ch.text(60)
    finally:
        hook.remove()
    assert events[events.index("submit") : events.index("L")].count("r") == 9, "a step between every two pieces"
    # the stream's prefill and its 2nd and 3rd tokens; then piece, step, ..., the last piece; both rows step together
    assert shapes[:3] == [(1, 2), (1, 1), (1, 1)]
    assert shapes[3:23] == [(1, CHUNK), (1, 1)] * 9 + [(1, 24), (2, 1)]
    want_text, want_fin = alone(solo, req(long, max_tokens=20))
    assert (long_text, long_fin.completion_tokens) == (want_text, want_fin.completion_tokens)
    assert text == alone(solo, req(SHORT, max_tokens=60))[0] and fin.finish_reason == "length"
    assert chunked.status()["prefilling"] == 0 and chunked.status()["active"] == 0

    whole = tiny_engine(tiny_model_dir, max_batch=8, prefill_chunk=4096)  # no piece: the stream waits a whole pass
    try:
        _got, ch, events = long_during_stream(whole, req(long, max_tokens=20))
        assert ch.text(60)[0] == long_text
    finally:
        whole.stop()
    assert events[events.index("submit") : events.index("L")].count("r") == 0


def test_seeded_sampling_after_pieces_is_as_alone(solo, chunked):
    long = req(LONG, max_tokens=24, temperature=0.9, top_p=0.95, seed=5, repetition_penalty=1.2)
    _got, ch, _events = long_during_stream(chunked, long)
    assert ch.text(60)[0] == alone(solo, long)[0]


def test_nothing_else_running_is_one_pass(chunked):
    shapes, hook = prefill_passes(chunked)
    try:
        chunked.submit(req(LONG, max_tokens=4)).text(60)
    finally:
        hook.remove()
    assert shapes[0] == (1, chunked.count_tokens(LONG))


def test_when_the_stream_ends_the_rest_of_the_prompt_is_one_pass(solo, chunked):
    long = chunked.encode(LONG)[:600]
    shapes, hook = prefill_passes(chunked)
    try:
        _got, ch, _events = long_during_stream(chunked, req(long, max_tokens=8), running_tokens=6)
        text = ch.text(60)[0]
    finally:
        hook.remove()
    # pieces before the stream's tokens 4, 5 and 6 (its last); then nothing decodes: the other 408 tokens at once
    assert [s for s in shapes if s[1] > 1] == [(1, 2)] + [(1, CHUNK)] * 3 + [(1, 600 - 3 * CHUNK)]
    assert text == alone(solo, req(long, max_tokens=8))[0]


def test_cancel_mid_prefill_frees_it_and_the_stream_goes_on(solo, chunked):
    failed = chunked.stats.failed
    shapes, hook = prefill_passes(chunked)
    try:
        got, ch, events = long_during_stream(chunked, req(LONG, max_tokens=20), {6: lambda ch: ch.cancel()})
        fin = ch.text(60)[1]
    finally:
        hook.remove()
    assert fin.finish_reason == "cancelled" and fin.completion_tokens == 0 and "L" not in events
    # the stream's prefill, then a piece before each of its tokens 4, 5 and 6; none after the cancel at its 6th
    assert [s for s in shapes if s[1] > 1] == [(1, 2)] + [(1, CHUNK)] * 3
    assert got[0] == alone(solo, req(SHORT, max_tokens=60))[0]
    assert chunked.stats.failed == failed
    assert chunked.status()["prefilling"] == 0 and chunked.status()["active"] == 0


def test_a_failing_piece_fails_only_its_request(solo, chunked):
    ids = chunked.encode(LONG)
    ids[5 * CHUNK + 3] = len(chunked.backend.tokenizer) + 5  # no such token: the 6th piece's forward pass raises
    failed = chunked.stats.failed
    shapes, hook = prefill_passes(chunked)
    try:
        got, ch, _events = long_during_stream(chunked, req(ids, max_tokens=20))
        with pytest.raises(ServeError, match="generation failed"):
            ch.text(60)
    finally:
        hook.remove()
    assert [s for s in shapes if s[1] > 1] == [(1, 2)] + [(1, CHUNK)] * 5, "the stream, 5 pieces; the 6th failed"
    assert got[0] == alone(solo, req(SHORT, max_tokens=60))[0]
    assert chunked.stats.failed == failed + 1 and chunked.running
    assert chunked.submit(req(LONG, max_tokens=8)).text(60)[0] == alone(solo, req(LONG, max_tokens=8))[0]


def test_hot_swap_mid_prefill_keeps_the_admitted_adapter(tiny_model_dir, tmp_path_factory, solo):
    """The live adapter merged (the CUDA default): the swap unmerges v1 between two pieces of a v1 request."""
    adapters = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    backend = make_backend(str(tiny_model_dir), backend="cpu", merge_live=True)
    eng = Engine(backend, max_batch=8, prefill_chunk=CHUNK).start(timeout=120)
    solo.load_adapter("v1", adapters["lighthouse"])
    try:
        eng.set_live("v1", adapters["lighthouse"])
        mid: list = []

        def promote(_ch) -> None:  # on the engine thread, between a piece and the next
            mid.append(eng.status()["prefilling"])
            eng.set_live("v2", adapters["sailing"])

        got, ch, _events = long_during_stream(eng, req(LONG, adapter=LIVE, max_tokens=20), {6: promote})
        long_text, long_fin = ch.text(60)
        assert mid == [1], "the promotion came mid-prefill"
        assert long_fin.adapter == "v1" and got[1].adapter is None  # the running stream is on the base
        assert long_text == alone(solo, req(LONG, adapter="v1", max_tokens=20))[0]
        assert eng.stats.failed == 0
        assert eng.call(lambda: eng.adapters()) == ["v2"]  # v1 unloaded once its last request finished
    finally:
        eng.stop()
        solo.unload("v1")


def test_a_chunk_prefilled_row_decodes_in_the_static_pool(tiny_model_dir, solo):
    backend = make_backend(str(tiny_model_dir), backend="cpu", static_decode=True, static_tokens=1024)
    eng = Engine(backend, max_batch=8, prefill_chunk=CHUNK).start(timeout=120)
    try:
        eng.warm_up()
        assert eng.status()["static_decode"]["ready"]
        long = eng.encode(LONG)[:600]  # its first token comes after the stream's 12th
        seen: list = []
        look = {15: lambda _ch: seen.append((eng.status()["batches"], eng.status()["static_decode"]["eager_steps"]))}
        got, ch, _events = long_during_stream(eng, req(long, max_tokens=20), look)
        assert ch.text(60)[0] == alone(solo, req(long, max_tokens=20))[0]
        assert got[0] == alone(solo, req(SHORT, max_tokens=60))[0]
        assert seen[0][0] == [2], "the long row joined the stream's batch"
        assert eng.status()["static_decode"]["eager_steps"] - seen[0][1] >= 19, "its steps ran in the static pool"
    finally:
        eng.stop()


def test_backend_pieces_give_the_tokens_of_one_pass_on_the_31m_base(gutenberg_31m, corpora):
    import torch

    from penwright.server.engine import make_backend
    from penwright.server.engine.torch_batch import KVBatch

    backend = make_backend(str(gutenberg_31m), backend="cpu")
    backend.load()
    text = next(p for p in sorted(corpora.rglob("*.txt")) if p.stat().st_size > 20_000).read_text()
    ids = backend.encode(text)[:1000]
    params = SamplingParams(max_tokens=12)

    def greedy(row) -> list[int]:
        batch = KVBatch(backend.device, backend.forward, backend.cache_kw)
        batch.sync([row])
        return [row.last] + [batch.decode()[0] for _ in range(11)]

    with torch.inference_mode():
        want = greedy(backend.prefill([ids], [params], None, None)[0])
        row = backend.start_prefill(ids, params)
        steps = 1
        while not backend.prefill_piece(row, 256, None, None):
            steps += 1
        assert steps == 4 and row.length == 1000 and row.kv[0][0].shape[-2] == 1000
        assert greedy(row) == want


def test_one_sequence_at_a_time_prefills_in_one_pass_as_before(solo):
    shapes, hook = prefill_passes(solo)
    try:
        (text, _fin), ch, events = long_during_stream(solo, req(LONG, max_tokens=8))
        long_text = ch.text(60)[0]
    finally:
        hook.remove()
    assert [s for s in shapes if s[1] > 1] == [(1, 2), (1, solo.count_tokens(LONG))]
    assert "L" in events and long_text == alone(solo, req(LONG, max_tokens=8))[0]
    assert text == alone(solo, req(SHORT, max_tokens=60))[0]
