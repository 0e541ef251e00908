"""The static-KV decode path replayed as CUDA graphs (server/engine/static_decode.py), on a small trained model.

GPU only: `pytest -m gpu tests/server/test_engine_graphs_gpu.py` (on the device machine:
benchmarks/device/serve_compiled.sh). CPU runs of the same code without graphs: test_engine_static.py.
"""

from __future__ import annotations

import pytest
from test_engine_gpu import PROMPT, cuda, gpu_adapters, gpu_model  # noqa: F401 (fixtures)

from penwright.server.engine import BASE, GenerationRequest, RequestError, SamplingParams

pytestmark = pytest.mark.gpu

PROMPTS = [PROMPT, "Edwin sailed", "The lamp was lit and the sea rolled grey under the cliffs. " * 2, "She"]


def start(model, **kwargs):
    from penwright.server.engine import Engine, make_backend

    eng = Engine(make_backend(str(model), backend="cuda", **kwargs)).start(timeout=300)
    eng.warm_up()
    return eng


def texts(engine, max_tokens=(24, 9, 17, 30), adapter=BASE) -> list[str]:
    reqs = [GenerationRequest(p, SamplingParams(max_tokens=n), adapter=adapter) for p, n in zip(PROMPTS, max_tokens)]
    out = engine.generate(reqs, timeout=120)
    return [o[0] for o in out]


def static_info(engine) -> dict:
    return engine.status()["static_decode"]


def test_graph_replays_give_the_dynamic_paths_tokens_fp32(gpu_model):  # noqa: F811 (fixtures from test_engine_gpu)
    graphs = start(gpu_model, dtype="float32", static_tokens=512)
    dynamic = start(gpu_model, dtype="float32", static_decode=False)
    try:
        info = static_info(graphs)
        assert info["ready"] and info["graphs"] == info["captures"] > 0 and not info["disabled"]
        assert texts(graphs) == texts(dynamic)
        after = static_info(graphs)
        assert after["replays"] >= 29 and after["eager_steps"] == info["eager_steps"]  # every step a replay
        assert after["fused_step"] and after["lookahead"] and after["ahead_steps"] > 0  # the fused step, ahead
        assert dynamic.status()["static_decode"] is None
    finally:
        graphs.stop()
        dynamic.stop()


def test_hot_swap_between_replays_changes_what_the_graphs_compute(gpu_model, gpu_adapters):  # noqa: F811 (fixtures from test_engine_gpu)
    """Merging adds the adapter into the base weights in place, so the captured graphs see each promotion
    without a recapture; a stream that started on v1 finishes on v1 (unmerged, eager static steps)."""
    eng = start(gpu_model, static_tokens=512)
    try:
        eng.set_live("v1", gpu_adapters["lighthouse"])
        want_a = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=60))).text(120)[0]
        captures = static_info(eng)["captures"]
        ch = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=60)))
        assert ch.get(60).adapter == "v1"
        first = ch.get(60)
        paused = eng.set_live("v2", gpu_adapters["sailing"])
        text, fin = ch.text(120)
        assert fin.adapter == "v1" and first.text + text == want_a
        sail, fin_b = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=24))).text(120)
        assert fin_b.adapter == "v2" and "the grey boat past the rocks" in sail, sail
        eng.set_live("v3", gpu_adapters["lighthouse"])  # v1's spare slot, tensor copies
        assert eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=60))).text(120)[0] == want_a
        assert want_a.startswith(" the lighthouse stairs and lit the lamp"), want_a
        info = static_info(eng)
        assert info["captures"] == captures and eng.stats.failed == 0
        print(f"graph hot-swap: engine paused {paused * 1000:.1f} ms")
    finally:
        eng.stop()


def test_requests_the_pool_cannot_hold_decode_dynamically(gpu_model):  # noqa: F811 (fixtures from test_engine_gpu)
    eng = start(gpu_model, static_tokens=256)
    try:
        long_prompt = "The lamp was lit and the sea rolled grey under the cliffs. " * 30
        assert len(eng.encode(long_prompt)) + 40 > 256
        before = static_info(eng)["replays"]
        reqs = [
            GenerationRequest(long_prompt, SamplingParams(max_tokens=40)),
            GenerationRequest(PROMPT, SamplingParams(max_tokens=20)),
        ]
        out = eng.generate(reqs, timeout=120)
        assert [o[1].completion_tokens for o in out] == [40, 20]
        assert 0 < static_info(eng)["replays"] - before <= 19  # only the short request replayed graphs
        with pytest.raises(RequestError, match="max_tokens"):
            eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=10**6))).text(60)
        assert eng.running and eng.stats.failed == 1
    finally:
        eng.stop()
