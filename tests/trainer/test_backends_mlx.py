"""The MLX backend for real (mlx-lm[cpu] here): train through mlx-lm's tuner, load the adapter, generate."""

from __future__ import annotations

import json

import pytest
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, write_dataset

from penwright.trainer.settings import ModelSettings, TrainingSettings

pytest.importorskip("mlx_lm", reason="mlx-lm[cpu] is part of the dev install; `pip install 'penwright[mlx]'`")


def test_mlx_train_load_generate(tiny_model_dir, tmp_path):
    import mlx.core as mx
    from mlx_lm import load

    from penwright.trainer.backends.mlx_backend import generate
    from penwright.trainer.registry import Registry
    from penwright.trainer.train import run_training

    ds = write_dataset(tmp_path / "ds", paragraphs(EXAMPLE_MANUSCRIPT))
    # a fixed row width (every chunk is longer than 64 tokens) keeps mlx from recompiling its step per shape
    s = TrainingSettings(
        method="dora",
        max_steps=4,
        rank=4,
        alpha=8,
        learning_rate=1e-2,
        batch_size=2,
        eval_every=None,
        save_every=2,
        max_seq_length=64,
        warmup_steps=0,
        targets="attn",
    )
    seen = []
    result = run_training(
        ds, s, tiny_model_dir, tmp_path / "run", model_settings=ModelSettings(backend="mlx"), on_progress=seen.append
    )
    assert result.backend == "mlx" and result.steps == 4 and result.status == "completed"
    assert [p["step"] for p in seen] == [1, 2, 3, 4] and seen[-1]["total"] == 4
    cfg = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert cfg["fine_tune_type"] == "dora" and cfg["lora_parameters"]["scale"] == 2.0
    assert set(cfg["lora_parameters"]["keys"]) == {f"self_attn.{p}_proj" for p in "qkvo"}
    weights = mx.load(str(result.adapter_dir / "adapters.safetensors"))
    assert any(k.endswith("lora_b") for k in weights) and any(k.endswith(".m") for k in weights)
    assert (tmp_path / "run" / "train_log.csv").is_file() and (tmp_path / "run" / "time_metrics.json").is_file()
    # the adapter loads with mlx-lm and changes the model's output
    base, tok = load(str(tiny_model_dir))
    tuned, _ = load(str(tiny_model_dir), adapter_path=str(result.adapter_dir))
    ids = mx.array([tok.encode("The keeper climbed the stair")])
    assert float(mx.abs(base(ids) - tuned(ids)).max()) > 1e-4
    text = generate(str(tiny_model_dir), result.adapter_dir, "The keeper", max_tokens=6)
    assert isinstance(text, str) and len(tok.encode(text)) >= 1
    # the registry recognises an mlx-lm adapter folder
    reg = Registry(tmp_path / "db.sqlite", tmp_path / "adapters")
    assert reg.publish(result.adapter_dir).format == "mlx"


def test_both_backends_declare_their_contract():
    from penwright.trainer.backends.contracts import StepBackend, TrainingBackend
    from penwright.trainer.backends.torch_backend import TorchBackend
    from penwright.trainer.train import training_backend

    mlx, cpu = training_backend("mlx"), training_backend("cpu")
    assert isinstance(mlx, TrainingBackend) and isinstance(cpu, TrainingBackend)
    assert (mlx.name, mlx.adapter_format, cpu.name, cpu.adapter_format) == ("mlx", "mlx", "cpu", "peft")
    assert isinstance(TorchBackend("unused", TrainingSettings(), ModelSettings(), "cpu"), StepBackend)


def test_both_backends_end_alike_and_warm_start_from_each_others_adapter(tiny_model_dir, tmp_path):
    """One epilogue: the same result fields from torch and MLX. A warm start takes the other backend's adapter as
    the same weights: at a learning rate of ~0 the adapter that comes out is the one that went in."""
    import mlx.core as mx
    import numpy as np
    from safetensors.torch import load_file

    from penwright.trainer.backends.formats import peft_to_mlx
    from penwright.trainer.train import run_training

    ds = write_dataset(tmp_path / "ds", paragraphs(EXAMPLE_MANUSCRIPT))
    common = dict(max_steps=2, rank=4, alpha=8, batch_size=2, eval_every=None, save_every=2, max_seq_length=64)
    common.update(warmup_steps=0, targets="attn")
    on = {name: ModelSettings(backend=name) for name in ("cpu", "mlx")}
    still = TrainingSettings(**common, learning_rate=1e-12)
    first = run_training(
        ds, TrainingSettings(**common, learning_rate=1e-2), tiny_model_dir, tmp_path / "a", model_settings=on["cpu"]
    )
    mlx_run = run_training(
        ds, still, tiny_model_dir, tmp_path / "b", model_settings=on["mlx"], init_adapter=first.adapter_dir
    )
    back = run_training(
        ds, still, tiny_model_dir, tmp_path / "c", model_settings=on["cpu"], init_adapter=mlx_run.adapter_dir
    )

    assert (first.adapter_format, mlx_run.adapter_format, back.adapter_format) == ("peft", "mlx", "peft")
    assert first.to_dict().keys() == mlx_run.to_dict().keys() and first.metrics.keys() == mlx_run.metrics.keys()
    for name in ("result.json", "time_metrics.json"):
        a, b = (json.loads((r.run_dir / name).read_text()) for r in (first, mlx_run))
        assert a.keys() == b.keys(), name
    assert json.loads((mlx_run.run_dir / "result.json").read_text())["adapter_format"] == "mlx"
    assert mlx_run.metrics["train_rows"] > 0 and mlx_run.metrics["precision"] == "fp32"

    went_in = peft_to_mlx(first.adapter_dir)[1]
    came_out = mx.load(str(mlx_run.adapter_dir / "adapters.safetensors"))
    assert came_out.keys() == went_in.keys() and any(float(mx.abs(v).max()) > 1e-3 for v in went_in.values())
    assert all(np.allclose(np.array(came_out[k]), np.array(went_in[k]), atol=1e-6) for k in went_in)
    torch_in, torch_out = (load_file(str(r.adapter_dir / "adapter_model.safetensors")) for r in (first, back))
    assert torch_out.keys() == torch_in.keys()
    assert all(np.allclose(torch_out[k].numpy(), torch_in[k].numpy(), atol=1e-6) for k in torch_in)
