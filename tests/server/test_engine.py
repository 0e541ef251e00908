"""The engine on its own: one model-owning thread, channels, sampling, stops, cancellation, adapters, hot-swap."""

from __future__ import annotations

import threading
import time

import pytest
from serving_fixtures import adapters_for, tiny_engine

from penwright.errors import ServeError
from penwright.server.engine import (
    BASE,
    Delta,
    Finished,
    GenerationRequest,
    RequestError,
    SamplingParams,
    Started,
    check_adapter_name,
)

PROMPT = "Maren climbed"


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tmp_path_factory):
    eng = tiny_engine(tiny_model_dir)
    ads = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    eng.load_adapter("light", ads["lighthouse"])
    eng.load_adapter("sail", ads["sailing"])
    yield eng
    eng.stop()


def run(engine, prompt=PROMPT, **kw):
    adapter = kw.pop("adapter", BASE)
    scale = kw.pop("adapter_scale", None)
    return engine.submit(GenerationRequest(prompt, SamplingParams(**kw), adapter=adapter, adapter_scale=scale)).text(60)


def test_streams_token_by_token_with_usage(engine):
    items = list(engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=7), adapter=BASE)))
    assert isinstance(items[0], Started) and items[0].adapter is None
    assert items[0].prompt_tokens == len(engine.encode(PROMPT))
    deltas = [i for i in items if isinstance(i, Delta)]
    fin = items[-1]
    assert isinstance(fin, Finished) and fin.finish_reason == "length" and fin.completion_tokens == 7
    assert 1 < len(deltas) <= 7  # one delta per token (a few may be merged across a partial character)
    assert "".join(d.text for d in deltas).strip()


def test_stop_sequence_cuts_before_it(engine):
    full, _ = run(engine, max_tokens=16)
    words = full.split()
    stop = " " + words[2]
    text, fin = run(engine, max_tokens=16, stop=(stop,))
    assert fin.finish_reason == "stop"
    assert text == full[: full.index(stop)]
    assert stop not in text


def test_seed_makes_sampling_reproducible(engine):
    a, _ = run(engine, max_tokens=12, temperature=1.0, seed=7)
    b, _ = run(engine, max_tokens=12, temperature=1.0, seed=7)
    c, _ = run(engine, max_tokens=12, temperature=1.0, seed=8)
    greedy, _ = run(engine, max_tokens=12)
    assert a == b
    assert c != a or greedy != a


def test_repetition_penalty_changes_greedy_output(engine):
    plain, _ = run(engine, max_tokens=12)
    penalised, _ = run(engine, max_tokens=12, repetition_penalty=2.5)
    assert plain != penalised
    assert len(set(penalised.split())) > len(set(plain.split()))


def test_cancel_stops_generation_at_once(engine):
    ch = engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=1500), adapter=BASE))
    assert isinstance(ch.get(30), Started)
    assert isinstance(ch.get(30), Delta)
    ch.cancel()
    items = []
    while not items or not isinstance(items[-1], Finished):
        items.append(ch.get(10))
    assert items[-1].finish_reason == "cancelled"
    assert items[-1].completion_tokens < 50
    assert engine.status()["active"] == 0


def test_adapters_side_by_side_and_scale(engine):
    base, _ = run(engine, adapter=BASE, max_tokens=10)
    a, fa = run(engine, adapter="light", max_tokens=10)
    b, fb = run(engine, adapter="sail", max_tokens=10)
    a0, _ = run(engine, adapter="light", adapter_scale=0.0, max_tokens=10)
    assert fa.adapter == "light" and fb.adapter == "sail"
    assert len({base, a, b}) == 3
    assert a0 == base  # scale 0 is the base model
    again, _ = run(engine, adapter="light", max_tokens=10)  # no state leaks from the scaled request
    assert again == a


def test_interleaved_requests_do_not_mix_adapters(engine):
    expected = {ad: run(engine, adapter=ad, max_tokens=24)[0] for ad in ("light", "sail", BASE)}
    channels = [
        (ad, engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=24), adapter=ad)))
        for ad in ("light", "sail", BASE) * 3
    ]
    for ad, ch in channels:
        assert ch.text(60)[0] == expected[ad]


def test_prompt_over_context_is_truncated_or_refused(engine):
    ctx = engine.context_length
    long_prompt = "the lamp " * ctx
    text, fin = run(engine, prompt=long_prompt, max_tokens=4)
    assert fin.prompt_tokens == ctx - 4 and fin.completion_tokens == 4
    ch = engine.submit(GenerationRequest(long_prompt, SamplingParams(max_tokens=4), adapter=BASE, truncate="error"))
    with pytest.raises(RequestError, match="context"):
        ch.get(30)
    with pytest.raises(RequestError, match="max_tokens"):
        run(engine, max_tokens=ctx + 10)
    with pytest.raises(RequestError, match="max_tokens"):
        run(engine, max_tokens=0)


def test_unknown_adapter_and_bad_names(engine):
    with pytest.raises(RequestError, match="not loaded"):
        run(engine, adapter="nope", max_tokens=2)
    for bad in ("../etc", "a/b", "v1.x", "", "x" * 65, "ora"):
        with pytest.raises(RequestError):
            check_adapter_name(bad)
    with pytest.raises(RequestError):
        engine.load_adapter("../../secrets", "/tmp")
    with pytest.raises(ServeError, match="adapter_config.json"):
        engine.load_adapter("empty", engine.backend.model_path)  # a model folder is not an adapter
    assert "empty" not in engine.adapters()
    assert engine.running  # a failed load leaves the engine serving


def test_hot_swap_during_stream_keeps_each_request_on_its_adapter(tiny_model_dir, tmp_path_factory):
    ads = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    eng = tiny_engine(tiny_model_dir)
    try:
        eng.set_live("v1", ads["lighthouse"])
        want_a = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=300))).text(60)[0]
        ch = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=300)))
        assert ch.get(30).adapter == "v1"
        first = ch.get(30)
        assert isinstance(first, Delta)
        paused = eng.set_live("v2", ads["sailing"])  # loads v2 beside v1, switches, v1 unloads when the stream ends
        assert not ch.closed, "the stream should still be running during the swap"
        assert eng.live == "v2" and paused < 30
        assert sorted(eng.adapters()) == ["v1", "v2"]  # v1 stays while its stream runs
        text, fin = ch.text(60)
        assert fin.adapter == "v1" and fin.finish_reason == "length"
        assert first.text + text == want_a  # not cut, and not switched to v2 halfway
        after, fin_b = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=10))).text(60)
        assert fin_b.adapter == "v2"
        deadline = time.time() + 10
        while "v1" in eng.adapters() and time.time() < deadline:
            time.sleep(0.05)
        assert eng.adapters() == ["v2"]  # the old one was unloaded once nothing used it
        eng.set_live("v1", ads["lighthouse"])  # rollback: same path back
        assert eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=300))).text(60)[0] == want_a
    finally:
        eng.stop()


def test_many_threads_submit_at_once(engine):
    results, errors = [], []

    def client(i):
        try:
            results.append(run(engine, prompt=f"{PROMPT} {i}", max_tokens=5)[1].finish_reason)
        except Exception as err:  # pragma: no cover - asserted below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and results.count("length") == 40
    assert engine.status()["queue_depth"] == 0


def test_merged_live_adapter_gives_the_same_tokens(tiny_model_dir, tmp_path_factory):
    """merge_live folds the live adapter into the weights (the CUDA default); output must not change."""
    from penwright.server.engine import Engine, make_backend

    ads = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    eng = Engine(make_backend(str(tiny_model_dir), backend="cpu", merge_live=True)).start(timeout=120)
    ref = tiny_engine(tiny_model_dir)
    try:
        for e in (eng, ref):
            e.set_live("v1", ads["lighthouse"])
            e.load_adapter("v2", ads["sailing"])
        want = {
            ad: ref.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter=ad)).text(60)[0]
            for ad in ("@live", "v2", BASE)
        }
        assert eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16))).text(60)[0] == want["@live"]
        assert eng.status()["merged_adapter"] == "v1"
        chans = [
            (ad, eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter=ad)))
            for ad in ("@live", "v2", BASE, "@live")
        ]
        for ad, ch in chans:
            assert ch.text(60)[0] == want[ad]
        assert (
            eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter=BASE)).text(60)[0] == want[BASE]
        )
        assert eng.status()["merged_adapter"] is None  # unmerged for the base request
        assert eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16))).text(60)[0] == want["@live"]
        # hot-swap reusing the spare slot of the unloaded adapter (same LoRA shape): weights copied, same tokens
        eng.set_live("v3", ads["sailing"])
        ref.set_live("v3", ads["sailing"])
        assert eng.status()["spare_adapter_slots"] == 1  # v1's slot, kept for reuse
        eng.set_live("v4", ads["lighthouse"])
        ref.set_live("v4", ads["lighthouse"])
        for e in (eng, ref):
            e.load_adapter("v5", ads["sailing"])
        for ad in ("@live", "v5", "v2", BASE):
            got = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter=ad)).text(60)[0]
            assert got == ref.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter=ad)).text(60)[0]
        assert want["@live"] == eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16))).text(60)[0]
        assert (
            want["v2"] == eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter="v5")).text(60)[0]
        )
    finally:
        eng.stop()
        ref.stop()


def test_mlx_adapter_folder_is_refused_clearly(engine, tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"fine_tune_type": "lora", "num_layers": 2}')
    (tmp_path / "adapters.safetensors").write_bytes(b"")
    with pytest.raises(ServeError, match="mlx-lm adapter"):
        engine.load_adapter("vmlx", tmp_path)
    (tmp_path / "adapters.safetensors").unlink()
    with pytest.raises(ServeError, match="not a PEFT config"):
        engine.load_adapter("vmlx", tmp_path)
    assert engine.running and "vmlx" not in engine.adapters()


def test_full_queue_is_refused_with_429(tiny_model_dir):
    eng = tiny_engine(tiny_model_dir, max_active=1, max_queue=2)
    try:
        long = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=1500), adapter=BASE))
        assert isinstance(long.get(30), Started)
        chans = [eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=2), adapter=BASE)) for _ in range(6)]
        long.cancel()  # refusals are decided at submit; let the queued ones run now
        assert long.text(30)[1].finish_reason == "cancelled"
        refused, served = [], 0
        for ch in chans:
            try:
                served += ch.text(60)[1].completion_tokens == 2
            except RequestError as err:
                refused.append(err.status)
        assert 3 <= len(refused) <= 4 and set(refused) == {429} and served == 6 - len(refused)
        assert (
            eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=2), adapter=BASE))
            .text(30)[1]
            .completion_tokens
            == 2
        )
    finally:
        eng.stop()


def test_share_cpu_gives_the_training_child_its_cores_and_takes_them_back(engine):
    import torch

    alone = engine.call(torch.get_num_threads)
    engine.share_cpu(1)  # a training child started with one thread
    assert engine.call(torch.get_num_threads) == max(1, alone - 1)
    _, fin = run(engine, max_tokens=4)  # still serves
    assert fin.completion_tokens > 0
    engine.share_cpu(0)  # the child ended
    assert engine.call(torch.get_num_threads) == alone


def test_promoting_back_an_adapter_whose_unload_is_pending(tiny_model_dir, tmp_path_factory):
    """v2 is promoted while a stream holds v1 (v1's unload waits for that stream); v1 is promoted back, and the
    stream ends (unloading v1) after that call found v1 loaded but before its switch ran: v1 must be live AND
    loaded. The stream's stop check, run on the engine thread, holds it at that point, so the order is fixed."""
    import threading
    import time

    ads = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    eng = tiny_engine(tiny_model_dir)
    armed, holding, release = threading.Event(), threading.Event(), threading.Event()

    def hold(text: str):
        if not armed.is_set():
            return None
        holding.set()
        release.wait(60)
        return len(text)  # the stream ends here

    try:
        eng.set_live("v1", ads["lighthouse"])
        ch = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=500), stop_check=hold))
        assert ch.get(30).adapter == "v1"
        eng.set_live("v2", ads["sailing"])  # v1 still streams: its unload waits for the stream
        armed.set()
        assert holding.wait(60)  # the engine thread is inside the v1 stream's last token
        back = threading.Thread(target=eng.set_live, args=("v1", ads["lighthouse"]))
        back.start()  # finds v1 loaded and queues the switch
        deadline = time.monotonic() + 30
        while eng._queue.qsize() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()  # the stream ends and v1 is unloaded; then the switch runs
        back.join(60)
        assert eng.live == "v1" and "v1" in eng.adapters()
        items = list(eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=3))))
        assert items[0].adapter == "v1" and isinstance(items[-1], Finished), items[-1]
    finally:
        release.set()
        eng.stop()
