"""The MLX backend through mlx-lm (mlx[cpu] here; Metal on Apple Silicon): same engine, same API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

mx = pytest.importorskip("mlx.core", reason="mlx-lm is not installed (pip install 'penwright[mlx]')")

from serving_fixtures import LiveServer  # noqa: E402

from penwright.server.app import create_app  # noqa: E402
from penwright.server.context import Services  # noqa: E402
from penwright.server.engine import BASE, Engine, GenerationRequest, SamplingParams, make_backend  # noqa: E402
from penwright.server.settings import ServerSettings  # noqa: E402

PROMPT = "Maren climbed"


def make_mlx_adapter(model_dir: Path, out: Path, seed: int, rank: int = 4) -> Path:
    """An mlx-lm LoRA adapter folder with non-zero random weights (mlx-lm's own layer wrapping and file format)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(model_dir))
    params = {
        "rank": rank,
        "scale": 20.0,
        "dropout": 0.0,
        "keys": ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"],
    }
    linear_to_lora_layers(model, 2, params)
    mx.random.seed(seed)
    weights = {
        k: mx.random.normal(v.shape) * 0.05
        for k, v in tree_flatten(model.trainable_parameters())
        if k.endswith(("lora_a", "lora_b"))
    }
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    (out / "adapter_config.json").write_text(
        json.dumps({"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": params})
    )
    return out


@pytest.fixture(scope="module")
def mlx_engine(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlx-adapters")
    a = make_mlx_adapter(tiny_model_dir, root / "a", seed=1)
    b = make_mlx_adapter(tiny_model_dir, root / "b", seed=2, rank=8)  # a different shape: re-wraps on switch
    eng = Engine(make_backend(str(tiny_model_dir), backend="mlx")).start(timeout=120)
    eng.load_adapter("va", a)
    eng.load_adapter("vb", b)
    yield eng
    eng.stop()


def gen(eng, adapter, scale=None, n=12, **kw):
    req = GenerationRequest(PROMPT, SamplingParams(max_tokens=n, **kw), adapter=adapter, adapter_scale=scale)
    return eng.submit(req).text(60)


def test_mlx_generates_like_torch(mlx_engine, tiny_model_dir):
    from serving_fixtures import tiny_engine

    assert mlx_engine.status()["backend"] == "mlx"
    text, fin = gen(mlx_engine, BASE)
    assert fin.finish_reason == "length" and fin.completion_tokens == 12
    torch_engine = tiny_engine(tiny_model_dir)
    try:
        ref = torch_engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=12), adapter=BASE)).text(60)[0]
    finally:
        torch_engine.stop()
    assert text == ref  # same weights, greedy: same words


def test_mlx_adapters_side_by_side_scale_and_interleaving(mlx_engine):
    base = gen(mlx_engine, BASE)[0]
    a, b = gen(mlx_engine, "va")[0], gen(mlx_engine, "vb")[0]
    assert len({base, a, b}) == 3
    assert gen(mlx_engine, "va", scale=0.0)[0] == base
    chans = [
        (ad, mlx_engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=12), adapter=ad)))
        for ad in ("va", "vb", BASE, "va")
    ]
    expected = {"va": a, "vb": b, BASE: base}
    for ad, ch in chans:
        assert ch.text(60)[0] == expected[ad]


def test_mlx_hot_swap_and_stop_and_cancel(mlx_engine):
    mlx_engine.set_live("va", unload_previous=False)
    a = gen(mlx_engine, "@live")[0]
    mlx_engine.set_live("vb", unload_previous=False)
    assert gen(mlx_engine, "@live")[0] == gen(mlx_engine, "vb")[0] != a
    full = gen(mlx_engine, BASE, n=16)[0]
    stop = " " + full.split()[1]
    assert gen(mlx_engine, BASE, n=16, stop=(stop,))[0] == full[: full.index(stop)]
    ch = mlx_engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=1500), adapter=BASE))
    ch.get(30)
    ch.get(30)
    ch.cancel()
    _, fin = ch.text(30)
    assert fin.finish_reason == "cancelled" and fin.completion_tokens < 100


def test_mlx_behind_the_http_api(mlx_engine):
    import openai

    services = Services(settings=ServerSettings(), engine=mlx_engine)
    with LiveServer(create_app(services)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        chunks = list(
            client.completions.create(model="penwright:base", prompt=PROMPT, max_tokens=6, temperature=0, stream=True)
        )
    assert "".join(c.choices[0].text for c in chunks) == gen(mlx_engine, BASE, n=6)[0]


def test_mlx_serves_a_peft_adapter_as_the_torch_engine_does(mlx_engine, tiny_model_dir, tmp_path_factory):
    """A PEFT adapter (trained with torch) served on MLX: its weights moved into mlx-lm's layout, the same tokens."""
    from serving_fixtures import adapters_for, tiny_engine

    path = next(iter(adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp()).values()))
    mlx_engine.load_adapter("from_peft", path)
    torch_engine = tiny_engine(tiny_model_dir)
    try:
        torch_engine.load_adapter("from_peft", path)
        want = torch_engine.submit(GenerationRequest(PROMPT, SamplingParams(max_tokens=12), adapter="from_peft"))
        want = want.text(60)[0]
    finally:
        torch_engine.stop()
    assert gen(mlx_engine, "from_peft")[0] == want != gen(mlx_engine, BASE)[0]
    mlx_engine.unload("from_peft")
