"""The engine on CUDA with a bitsandbytes-quantized base: nf4 (and 8-bit) loading, LoRA adapters, hot-swap.

GPU only: `pytest -m gpu tests/server/test_engine_gpu.py` (on the device machine: benchmarks/device/gpu_tests.sh).
The base is a small random-init Qwen2 (builtin:tiny's recipe, wider and deeper so every projection is
quantized in bitsandbytes blocks). Each adapter is trained for real on the full-precision weights until it
recites its text, so what it says on the quantized base shows whether it is applied, and applied to the
right requests.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from serving_fixtures import ADAPTER_TEXTS

from penwright.server.engine import BASE, Delta, Finished, GenerationRequest, SamplingParams, Started

pytestmark = pytest.mark.gpu

PROMPT = "Maren climbed"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch


@pytest.fixture(scope="module")
def gpu_model(cuda, tmp_path_factory) -> Path:
    from pwtest import example_texts

    from penwright.trainer.tiny import TinySpec, build_tiny_model

    spec = TinySpec(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4, num_kv_heads=2, seed=3)
    return build_tiny_model(example_texts(), tmp_path_factory.mktemp("gpu-model"), spec)


def train_lora(model_dir: Path, text: str, out: Path, steps: int = 40, lr: float = 3e-3) -> Path:
    """Plain PEFT LoRA on every projection, fp32 on the GPU, until the model recites `text` (a few seconds)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to("cuda")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=list(PROJECTIONS)))
    ids = torch.tensor([tok.encode(text * 6)[:64]], device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpu_adapters(gpu_model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gpu-adapters")
    return {name: train_lora(gpu_model, text, folder / name) for name, text in ADAPTER_TEXTS.items()}


def start_engine(model: Path, quantization: str, **kwargs):
    from penwright.server.engine import Engine, make_backend

    return Engine(make_backend(str(model), backend="cuda", quantization=quantization), **kwargs).start(timeout=300)


@pytest.fixture(scope="module")
def nf4(gpu_model, gpu_adapters):
    eng = start_engine(gpu_model, "4bit")
    eng.load_adapter("light", gpu_adapters["lighthouse"])
    eng.load_adapter("sail", gpu_adapters["sailing"])
    yield eng
    eng.stop()


def run(engine, adapter=BASE, max_tokens=16, scale=None):
    req = GenerationRequest(PROMPT, SamplingParams(max_tokens=max_tokens), adapter=adapter, adapter_scale=scale)
    return engine.submit(req).text(120)


def quantized_layers(model, kind: str) -> dict[str, object]:
    import bitsandbytes as bnb

    cls = {"4bit": bnb.nn.Linear4bit, "8bit": bnb.nn.Linear8bitLt}[kind]
    return {name: m for name, m in model.named_modules() if isinstance(m, cls)}


def bf16_bytes(model_dir: Path) -> int:
    """What the base's weights take in bf16."""
    import math

    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return 2 * sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def test_nf4_base_loads_quantized_on_cuda_and_streams(cuda, gpu_model):
    before = cuda.cuda.memory_allocated()  # other engines of this module may be alive
    eng = start_engine(gpu_model, "4bit")
    try:
        status = eng.status()
        assert status["device"].startswith("cuda") and status["quantization"] == "4bit"
        layers = quantized_layers(eng.backend.model, "4bit")
        assert len(layers) == 4 * len(PROJECTIONS)  # every projection of every layer, not the embedding
        assert {m.weight.quant_type for m in layers.values()} == {"nf4"}
        assert status["memory_bytes"] - before < 0.6 * bf16_bytes(gpu_model)  # 4-bit weights: well under bf16
        items = list(eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=12), adapter=BASE)))
        assert isinstance(items[0], Started) and items[0].prompt_tokens == len(eng.encode(PROMPT))
        fin = items[-1]
        assert isinstance(fin, Finished) and fin.finish_reason == "length" and fin.completion_tokens == 12
        assert sum(isinstance(i, Delta) for i in items) >= 2
        assert eng.status()["merged_adapter"] is None  # merging into 4-bit weights is off
    finally:
        eng.stop()


def test_adapters_on_nf4_base_steer_output_and_scale(nf4):
    base, _ = run(nf4)
    light, fin_l = run(nf4, "light")
    sail, fin_s = run(nf4, "sail")
    assert fin_l.adapter == "light" and fin_s.adapter == "sail"
    assert len({base, light, sail}) == 3
    assert run(nf4, "light", scale=0.0)[0] == base  # scale 0 is the quantized base alone
    assert run(nf4, "light")[0] == light  # no state left over from the scaled request
    # each adapter recites its text on the full-precision base; nf4 noise must not drown that out
    assert light.startswith(" the lighthouse stairs and lit the lamp"), light
    assert "the grey boat past the rocks" in sail, sail


def test_concurrent_requests_on_nf4_keep_their_adapters(nf4):
    want = {ad: run(nf4, ad, max_tokens=12)[0] for ad in ("light", "sail")}
    chans = [
        (ad, nf4.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=12), adapter=ad)))
        for ad in ("light", "sail", "light", BASE, "sail", "light")
    ]
    for ad, ch in chans:
        text, fin = ch.text(120)
        assert fin.finish_reason == "length" and fin.adapter == (None if ad == BASE else ad)
        if ad != BASE:  # the memorised text is far from any near-tie, so batching gives the same tokens
            assert text == want[ad]
    assert nf4.status()["active"] == 0


def test_hot_swap_on_nf4_base_during_a_stream(gpu_model, gpu_adapters):
    ads = gpu_adapters
    eng = start_engine(gpu_model, "4bit")
    try:
        eng.set_live("v1", ads["lighthouse"])
        want_a = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=200))).text(120)[0]
        ch = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=200)))
        assert ch.get(60).adapter == "v1"
        first = ch.get(60)
        assert isinstance(first, Delta)
        paused = eng.set_live("v2", ads["sailing"])
        assert eng.live == "v2" and paused < 30
        text, fin = ch.text(120)
        assert fin.adapter == "v1" and fin.finish_reason == "length"
        assert first.text + text == want_a  # the stream finished on the adapter it started with
        want_b = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16), adapter="v2")).text(120)[0]
        after, fin_b = eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=16))).text(120)
        assert fin_b.adapter == "v2" and after == want_b
        deadline = time.time() + 30
        while "v1" in eng.adapters() and time.time() < deadline:
            time.sleep(0.05)
        assert eng.adapters() == ["v2"]
        # a retrained version of the same LoRA shape reuses v1's spare slot: a tensor copy, no module injection
        assert eng.status()["spare_adapter_slots"] == 1
        swap_s = eng.set_live("v3", ads["lighthouse"])
        assert eng.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=200))).text(120)[0] == want_a
        print(f"nf4 hot-swaps: first {paused * 1000:.1f} ms, into a spare slot {swap_s * 1000:.1f} ms")
    finally:
        eng.stop()


def test_int8_base_streams_with_an_adapter(gpu_model, gpu_adapters):
    eng = start_engine(gpu_model, "8bit")
    try:
        assert len(quantized_layers(eng.backend.model, "8bit")) == 4 * len(PROJECTIONS)
        eng.set_live("v1", gpu_adapters["lighthouse"])
        base, _ = run(eng)
        light, fin = run(eng, "@live")
        assert fin.adapter == "v1" and fin.completion_tokens == 16 and light != base
    finally:
        eng.stop()
