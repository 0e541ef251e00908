"""Static-KV decoding (server/engine/static_decode.py): rows decoded in the preallocated pool get exactly what
they get alone on the dynamic path, through joins, leaves, sampling, adapters and hot-swaps.

On CPU the static step runs eagerly (CUDA graphs are GPU-only: tests/server/test_engine_graphs_gpu.py replays
them); everything else is the same code. Scheduling is driven from requests' stop_checks on the engine thread,
as in test_engine_batch.py: the same schedule on any machine.
"""

from __future__ import annotations

import pytest
from serving_fixtures import adapters_for
from test_engine_batch import PROMPTS, alone, at_token, req, submit_together

from penwright.server.engine import BASE, LIVE, Engine, make_backend

POOL_TOKENS = 160  # static_tokens of the test pool: PROMPTS[3] with 40 new tokens does not fit


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    return adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())


def make_engine(model_dir, adapters, static: bool, **kwargs) -> Engine:
    backend = make_backend(
        str(model_dir),
        backend="cpu",
        static_decode=static,
        static_tokens=POOL_TOKENS,
        merge_live=kwargs.pop("merge_live", "auto"),
        static_lookahead=kwargs.pop("lookahead", "auto"),
        adapter_spares=kwargs.pop("adapter_spares", "auto"),
    )
    eng = Engine(backend, **kwargs).start(timeout=120)
    for name, path in (("light", adapters["lighthouse"]), ("sail", adapters["sailing"])):
        eng.load_adapter(name, path)
    eng.warm_up()
    return eng


@pytest.fixture(scope="module")
def solo(tiny_model_dir, adapters):
    eng = make_engine(tiny_model_dir, adapters, static=False, max_batch=1)
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def static(tiny_model_dir, adapters):
    eng = make_engine(tiny_model_dir, adapters, static=True, max_batch=8)
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def ahead(tiny_model_dir, adapters):
    """Greedy rows launch their next step before their token is read (the CUDA default; synchronous on CPU)."""
    eng = make_engine(tiny_model_dir, adapters, static=True, max_batch=8, lookahead=True)
    yield eng
    eng.stop()


def steps(engine) -> int:
    return engine.status()["static_decode"]["eager_steps"]


def test_cpu_default_keeps_the_dynamic_path(tiny_model_dir):
    backend = make_backend(str(tiny_model_dir), backend="cpu")
    backend.load()
    assert backend.static is None  # "auto": static decoding only on CUDA
    assert type(backend.new_batch()).__name__ == "KVBatch"


def test_warm_up_checks_the_static_path_against_the_dynamic_one(static):
    info = static.status()["static_decode"]
    assert info["ready"] and info["disabled"] is None
    assert info["slots"] == 8 and info["max_tokens"] == POOL_TOKENS
    assert info["graphs"] == 0  # CPU: no CUDA graphs
    assert info["fused_step"]  # a Qwen2 model: the fused step, checked against the dynamic path


def test_greedy_rows_joining_and_leaving_match_alone(solo, static):
    late: list = []
    wave2 = [req(PROMPTS[1] + " and", max_tokens=20), req(PROMPTS[0] + " the", max_tokens=8)]
    wave1 = [
        req(PROMPTS[0], max_tokens=40, stop_check=at_token(6, lambda: late.extend(static.submit(r) for r in wave2))),
        req(PROMPTS[1], max_tokens=12),
        req(PROMPTS[2], max_tokens=30),
    ]
    before = steps(static)
    got = [ch.text(60) for ch in submit_together(static, wave1)]
    got += [ch.text(60) for ch in late]
    want = [alone(solo, r) for r in wave1 + wave2]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1].completion_tokens for g in got] == [w[1].completion_tokens for w in want]
    # rows joined the running batch and left it mid-way: fewer static steps than decoded tokens
    assert 0 < steps(static) - before < sum(w[1].completion_tokens - 1 for w in want)
    assert static.status()["batches"] == [] and static.status()["active"] == 0


def test_steps_launched_ahead_give_the_same_tokens_through_joins_and_leaves(solo, ahead):
    """Rows join mid-stream, leave at max_tokens and on cancel: each join or leave drops the step launched ahead
    (its KV column is written again by the next step), and every row still gets what it gets alone."""
    late: list = []
    cancelled: list = []
    wave2 = [req(PROMPTS[1] + " and", max_tokens=20), req(PROMPTS[0] + " the", max_tokens=8)]

    def join():
        late.extend(ahead.submit(r) for r in wave2)

    wave1 = [
        req(PROMPTS[0], max_tokens=40, stop_check=at_token(6, join)),
        req(PROMPTS[1], max_tokens=12),
        req(PROMPTS[2], max_tokens=30, stop_check=at_token(9, lambda: cancelled[0].cancel())),
        req(PROMPTS[0], max_tokens=25),
    ]
    before = ahead.status()["static_decode"]["ahead_steps"]

    def submit():  # on the engine thread: all admitted together, the cancel target known before any step
        chs = [ahead.submit(r) for r in wave1]
        cancelled.append(chs[2])
        return chs

    channels = ahead.call(submit)
    got = [ch.text(60) for i, ch in enumerate(channels) if i != 2] + [ch.text(60) for ch in late]
    rest = [r for i, r in enumerate(wave1) if i != 2] + wave2
    want = [alone(solo, r) for r in rest]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1].completion_tokens for g in got] == [w[1].completion_tokens for w in want]
    assert ahead.status()["static_decode"]["ahead_steps"] - before > 20
    assert ahead.stats.failed == 0 and ahead.status()["active"] == 0


def test_fused_step_with_the_modules_gemms_gives_the_same_tokens(solo, static):
    """The fused step's fallback when its fused GEMMs round differently (check() picks it on the device): q, k, v,
    gate and up as the modules' own five GEMMs, everything else fused."""
    decoder = static.backend.static
    fused = decoder.fused
    rs = [req(PROMPTS[0], max_tokens=24), req(PROMPTS[1], max_tokens=16), req(PROMPTS[2], max_tokens=20)]
    before = steps(static)

    def split_error() -> float:  # logits against the dynamic path's, fp32 (a tiny random model's tokens barely
        fused.split = True  # depend on its MLP, so the logits are compared too)
        return decoder.compare(fused)

    try:
        error = static.call(split_error)
        got = [ch.text(60)[0] for ch in submit_together(static, rs)]
    finally:
        static.call(lambda: setattr(fused, "split", False))
    assert error < 1e-5 and static.call(lambda: decoder.compare(fused)) < 1e-5
    assert got == [alone(solo, r)[0] for r in rs]
    assert steps(static) > before


def test_weights_put_in_anew_are_fused_again(solo, static):
    """Something reassigns a projection's weight (a new tensor, not an in-place add): the fused step reads stale
    memory unless the decoder notices, so it fuses again before the next step, and tokens stay the same."""
    decoder = static.backend.static
    before = decoder.fused

    def reassign():
        base = static.backend.model.get_base_model() if hasattr(static.backend.model, "get_base_model") else None
        layer = (base or static.backend.model).model.layers[0].self_attn.q_proj
        layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        layer.weight.data = layer.weight.data.clone()  # same values, new memory
        static.backend._slots.changes += 1  # what a module change records

    static.call(reassign)
    r = req(PROMPTS[0], max_tokens=20)
    assert static.submit(r).text(60)[0] == alone(solo, r)[0]
    assert decoder.fused is not None and decoder.fused is not before


def test_seeded_sampling_and_penalties_match_alone(solo, static):
    rs = [
        req(PROMPTS[0], max_tokens=24, temperature=1.0, seed=7),
        req(PROMPTS[1], max_tokens=24, temperature=0.8, top_p=0.9, seed=11),
        req(PROMPTS[2], max_tokens=24, temperature=0.7, seed=3, repetition_penalty=1.3),
        req(PROMPTS[0], max_tokens=24, frequency_penalty=0.5, presence_penalty=0.3),
        req(PROMPTS[2], max_tokens=24),
    ]
    before = steps(static)
    got = [ch.text(60)[0] for ch in submit_together(static, rs)]
    assert got == [alone(solo, r)[0] for r in rs]
    assert len(set(got[:3])) == 3
    assert steps(static) > before


def test_rows_that_do_not_fit_and_other_selections_decode_dynamically(solo, static):
    """The pool takes one adapter selection's rows that fit in it, also after a longer request of that selection
    started a dynamic batch; the longer one and a second selection running at the same time decode dynamically,
    and every row still gets what it gets alone."""
    long_prompt = static.encode(PROMPTS[3])
    assert len(long_prompt) + 40 > POOL_TOKENS
    seen: list = []
    rs = [
        req(PROMPTS[3], adapter="light", max_tokens=40),
        req(
            PROMPTS[0],
            adapter="light",
            max_tokens=30,
            stop_check=at_token(3, lambda: seen.append(sorted(static.status()["batches"]))),
        ),
        req(PROMPTS[2], adapter="sail", max_tokens=20),
        req(PROMPTS[1], adapter="light", max_tokens=10),
    ]
    before = steps(static)
    got = [ch.text(60) for ch in submit_together(static, rs)]
    want = [alone(solo, r) for r in rs]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert seen == [[1, 1, 2]]  # light in the pool (2 rows), light too long (dynamic), sail (dynamic)
    assert 0 < steps(static) - before <= 29  # only the pool's rows took static steps
    assert static.stats.failed == 0


@pytest.mark.parametrize("lookahead", [False, True])
def test_hot_swap_during_static_streams(tiny_model_dir, adapters, solo, lookahead):
    """Live adapter merged (the CUDA default), streams in the pool, a promotion at a stream's 5th token: running
    rows keep v1 (unmerged, eager static steps), new rows get v2, then v2 merged decodes in the pool again.
    With lookahead the step launched ahead before the promotion ran on v1's merged weights: its tokens are v1's.
    With spare slots (the CUDA default), the first adapter loaded ("light") is injected with three spares beside it;
    "sail", v1 and v2 are copied into them, v2 while v1 stays merged for its running rows."""
    spares = 3 if lookahead else 0
    eng = make_engine(
        tiny_model_dir, adapters, static=True, merge_live=True, lookahead=lookahead, adapter_spares=spares
    )
    for name, path in (("v1", adapters["lighthouse"]), ("v2", adapters["sailing"])):
        solo.load_adapter(name, path)
    try:
        eng.set_live("v1", adapters["lighthouse"])
        assert eng.status()["spare_adapter_slots"] == max(spares - 2, 0)
        after: list = []

        def promote():
            eng.set_live("v2", adapters["sailing"])  # on the engine thread, between two steps' tokens
            after.extend(eng.submit(req(p, adapter=LIVE, max_tokens=20)) for p in PROMPTS[:2])
            after.append(eng.status()["spare_adapter_slots"])

        rs = [
            req(PROMPTS[0], adapter=LIVE, max_tokens=40, stop_check=at_token(5, promote)),
            req(PROMPTS[1], adapter=LIVE, max_tokens=40),
            req(PROMPTS[2], adapter=LIVE, max_tokens=12),
        ]
        got = [ch.text(60) for ch in submit_together(eng, rs)]
        assert after.pop() == 0  # (with spares: v2 went into the last spare; v1 still serves its rows)
        new = [ch.text(60) for ch in after]
        assert [f.adapter for _, f in got] == ["v1"] * 3 and [f.adapter for _, f in new] == ["v2"] * 2
        assert [t for t, _ in got] == [
            alone(solo, req(r.prompt, adapter="v1", max_tokens=r.sampling.max_tokens))[0] for r in rs
        ]
        assert [t for t, _ in new] == [alone(solo, req(p, adapter="v2", max_tokens=20))[0] for p in PROMPTS[:2]]
        before = steps(eng)
        assert eng.submit(req(PROMPTS[0], adapter=LIVE, max_tokens=20)).text(60)[0] == new[0][0]
        assert steps(eng) - before == 19 and eng.status()["merged_adapter"] == "v2"
        assert eng.stats.failed == 0
    finally:
        eng.stop()
        solo.unload("v1")
        solo.unload("v2")


def test_generate_runs_requests_together_for_the_gate(solo, static):
    rs = [
        req(PROMPTS[i], adapter=ad, max_tokens=12, temperature=0.8, top_p=0.95, seed=i)
        for i, ad in enumerate(["light", "light", BASE])
    ]
    got = static.generate(rs, timeout=60)
    assert [g[0] for g in got] == [alone(solo, r)[0] for r in rs]
    assert [g[1].completion_tokens for g in got] == [12, 12, 12] or all(g[1].finish_reason for g in got)
    bad = static.generate([req(PROMPTS[0], adapter="nope")], timeout=60)
    assert isinstance(bad[0], Exception) and "not loaded" in str(bad[0])
