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
