"""The gate's measurement of an MLX-trained adapter: its mlx-lm weights moved into a PEFT LoRA of the same base
(trainer/backends/formats.py) give the same outputs on torch, and `child_main.measure` measures it (and an mlx-lm
reference) with the torch adapter's voice measures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlx_lm", reason="mlx-lm[cpu] is part of the dev install; `pip install 'penwright[mlx]'`")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))

from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, write_dataset  # noqa: E402

from penwright.trainer.backends.formats import (  # noqa: E402
    adapter_format,
    mlx_to_peft_weights,
    peft_to_mlx_weights,
)

KEYS = ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]


def mlx_adapter(model_dir: Path, out: Path, seed: int, kind: str = "lora", rank: int = 4) -> Path:
    """An mlx-lm adapter folder with random non-zero weights (DoRA: a magnitude moved off the weight norm too)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(model_dir))
    params = {"rank": rank, "scale": 2.5, "dropout": 0.0, "keys": KEYS}
    linear_to_lora_layers(model, 2, params, use_dora=kind == "dora")
    mx.random.seed(seed)
    weights = {}
    for name, value in tree_flatten(model.trainable_parameters()):
        if name.endswith(("lora_a", "lora_b")):
            weights[name] = mx.random.normal(value.shape) * 0.2
        elif name.endswith(".m"):
            weights[name] = value * (1 + 0.2 * mx.random.uniform(shape=value.shape))
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    config = {"fine_tune_type": kind, "num_layers": 2, "lora_parameters": params, "model": str(model_dir)}
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_an_mlx_adapter_computes_the_same_as_its_peft_form_on_torch(tiny_model_dir, tmp_path, kind):
    import mlx.core as mx
    import torch
    from mlx_lm import load
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from penwright.server.daemon.child_main import as_peft

    adapter = mlx_adapter(tiny_model_dir, tmp_path / "mlx", seed=3, kind=kind)
    converted = as_peft(adapter, tmp_path / "peft", str(tiny_model_dir))
    assert adapter_format(adapter) == "mlx" and adapter_format(converted) == "peft" and converted != adapter
    tuned, _ = load(str(tiny_model_dir), adapter_path=str(adapter))
    torch_base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(torch_base, converted).eval()
    # every adapted layer: the same function of its input (up to float32 rounding)
    torch_modules = dict(model.base_model.model.named_modules())
    x = np.random.default_rng(0).normal(size=(3, 128)).astype(np.float32)
    for layer in range(2):
        for key in KEYS:
            path = f"model.layers.{layer}.{key}"
            mlx_module = tuned.model.layers[layer]
            for part in key.split("."):
                mlx_module = getattr(mlx_module, part)
            width = mlx_module.lora_a.shape[0]
            out_mlx = np.array(mlx_module(mx.array(x[:, :width])))
            with torch.no_grad():
                out_torch = torch_modules[path](torch.tensor(x[:, :width])).numpy()
            assert np.abs(out_mlx - out_torch).max() < 1e-4 * max(1.0, np.abs(out_mlx).max()), path
    # the whole model: the adapter moves the logits, the same way on both (attention kernels round differently)
    ids = [[5, 17, 230, 41, 99, 300, 7, 12]]
    base, _ = load(str(tiny_model_dir))
    moved_mlx = np.array(tuned(mx.array(ids))) - np.array(base(mx.array(ids)))
    with torch.no_grad():
        moved_torch = model(torch.tensor(ids)).logits.numpy()
        with model.disable_adapter():
            moved_torch -= model(torch.tensor(ids)).logits.numpy()
    assert np.abs(moved_mlx).max() > 0.05
    assert np.linalg.norm(moved_torch - moved_mlx) / np.linalg.norm(moved_mlx) < 0.2  # a wrong scale gives 0.75


def test_peft_and_mlx_forms_carry_the_same_numbers_both_ways():
    rng = np.random.default_rng(0)
    weights = {}
    for layer in range(3):
        for key in KEYS:
            module = f"model.layers.{layer}.{key}"
            weights[f"{module}.lora_a"] = rng.normal(size=(16, 4))
            weights[f"{module}.lora_b"] = rng.normal(size=(4, 24))
            weights[f"{module}.m"] = rng.normal(size=(24,))
    config = {"fine_tune_type": "dora", "num_layers": 3, "lora_parameters": {"rank": 4, "scale": 2.5, "keys": KEYS}}
    lora, peft = mlx_to_peft_weights(config, weights)
    assert lora["r"] == 4 and lora["lora_alpha"] == 10.0 and lora["use_dora"] is True
    a = peft["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"]
    assert a.shape == (4, 16) and np.array_equal(a, weights["model.layers.1.mlp.down_proj.lora_a"].T)
    back_config, back = peft_to_mlx_weights({"peft_type": "LORA", **lora}, peft)
    assert back_config["num_layers"] == 3 and back_config["lora_parameters"]["keys"] == sorted(KEYS)
    assert back_config["lora_parameters"]["scale"] == 2.5 and back_config["fine_tune_type"] == "dora"
    assert back.keys() == weights.keys() and all(np.array_equal(back[k], weights[k]) for k in weights)
    with pytest.raises(Exception, match="different modules in different layers"):
        peft_to_mlx_weights({"peft_type": "LORA", **lora}, {k: v for k, v in peft.items() if "layers.2.mlp" not in k})


def test_measure_an_mlx_candidate_against_an_mlx_reference(tiny_model_dir, tmp_path):
    from penwright.server.daemon.child_main import measure

    data = write_dataset(tmp_path / "ds", paragraphs(EXAMPLE_MANUSCRIPT))
    candidate = mlx_adapter(tiny_model_dir, tmp_path / "candidate", seed=1)
    reference = mlx_adapter(tiny_model_dir, tmp_path / "live", seed=2, kind="dora")
    spec = {
        "dataset_dir": str(data),
        "base_model": str(tiny_model_dir),
        "run_dir": str(tmp_path / "runs" / "run-1"),
        "gate_samples": 2,
        "reference_adapter": str(reference),
    }
    cand, ref = measure(spec, candidate)
    assert cand["adapter_format"] == "mlx"
    assert cand["perplexity"] > 0 and ref["perplexity"] > 0 and cand["perplexity"] != ref["perplexity"]
    assert cand["voice"]["own_ratio"] != 1.0 and ref["voice"]["own_ratio"] != 1.0  # both differ from the base
    assert (tmp_path / "runs" / "run-1" / "gate" / "candidate" / "adapter_model.safetensors").is_file()
    json.dumps(cand), json.dumps(ref)  # what the child sends the daemon
    again, _ = measure({**spec, "reference_adapter": None}, tmp_path / "runs" / "run-1" / "gate" / "candidate")
    assert again["perplexity"] == cand["perplexity"] and again["adapter_format"] == "peft"  # the same weights
