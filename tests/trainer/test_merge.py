"""Merge (merged logits == adapter logits), Ollama Modelfile and fused MLX export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from penwright.errors import TrainingError
from penwright.trainer.export import export_mlx, export_ollama
from penwright.trainer.merge import merge_adapter

PROMPT = "The keeper climbed the stair and lit the lamp."


def random_peft_adapter(base: Path, out: Path, dora: bool) -> Path:
    """An adapter whose B matrices are non-zero, as after training (zero B would make any merge 'equal')."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"], use_dora=dora)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(out)
    return out


@pytest.mark.parametrize("dora", [False, True])
def test_merged_logits_equal_adapter_logits(tiny_model_dir, tmp_path, dora):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = random_peft_adapter(tiny_model_dir, tmp_path / "adapter", dora)
    out = merge_adapter(str(tiny_model_dir), adapter, tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        plain = base(ids).logits
        with_adapter = PeftModel.from_pretrained(base, str(adapter))(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out)(ids).logits
    assert (with_adapter - plain).abs().max() > 1e-2  # the adapter really changes the model
    torch.testing.assert_close(merged, with_adapter, atol=1e-4, rtol=1e-4)
    with pytest.raises(TrainingError, match="not empty"):
        merge_adapter(str(tiny_model_dir), adapter, out)


def test_ollama_modelfile(tiny_model_dir, tmp_path):
    """Ollama's Modelfile rules: FROM a GGUF (or an Ollama model), ADAPTER a GGUF LoRA for that base (paths
    relative to the Modelfile), TEMPLATE in Go template syntax with .Suffix for FIM, SYSTEM, PARAMETER stop."""
    import gguf

    adapter = random_peft_adapter(tiny_model_dir, tmp_path / "adapter", False)
    fim = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
    mf = export_ollama(str(tiny_model_dir), adapter, tmp_path / "ollama", system="Write as the author.", fim=fim)
    text = mf.read_text()
    assert text.startswith("FROM ./base.gguf\nADAPTER ./adapter.gguf\n")
    assert gguf.GGUFReader(str(mf.parent / "adapter.gguf")).fields["general.type"].contents() == "adapter"
    assert gguf.GGUFReader(str(mf.parent / "base.gguf")).fields["general.type"].contents() == "model"
    assert "{{ if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>{{ else }}" in text
    assert "<|im_start|>system\n{{ .System }}<|im_end|>" in text and text.count("{{ end }}") == 3
    assert 'SYSTEM """Write as the author."""' in text and 'PARAMETER stop "<|im_end|>"' in text
    named = export_ollama(str(tiny_model_dir), adapter, tmp_path / "on-qwen", ollama_base="qwen2.5:0.5b")
    assert named.read_text().startswith("FROM qwen2.5:0.5b\nADAPTER ./adapter.gguf\n")
    merged = export_ollama(str(tiny_model_dir), adapter, tmp_path / "ollama_merged", merged=True)
    assert merged.read_text().startswith("FROM ./model.gguf\n") and "ADAPTER" not in merged.read_text()
    assert (merged.parent / "model.gguf").is_file()


def test_fused_mlx_export_matches_the_adapter(tiny_model_dir, tmp_path):
    pytest.importorskip("mlx_lm")
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, tok = load(str(tiny_model_dir))
    params = {"rank": 4, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "mlp.down_proj"]}
    linear_to_lora_layers(model, 2, params)
    mx.random.seed(3)
    model.update(
        tree_unflatten(
            [(k, mx.random.normal(v.shape) * 0.2) for k, v in tree_flatten(model.parameters()) if k.endswith("lora_b")]
        )
    )
    adapter = tmp_path / "mlx_adapter"
    adapter.mkdir()
    mx.save_safetensors(
        str(adapter / "adapters.safetensors"),
        {k: v for k, v in tree_flatten(model.parameters()) if k.endswith(("lora_a", "lora_b"))},
    )
    (adapter / "adapter_config.json").write_text(
        json.dumps({"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": params})
    )
    out = export_mlx(str(tiny_model_dir), adapter, tmp_path / "fused")
    ids = mx.array([tok.encode(PROMPT)])
    base, _ = load(str(tiny_model_dir))
    tuned, _ = load(str(tiny_model_dir), adapter_path=str(adapter))
    fused, _ = load(str(out))
    assert float(mx.abs(tuned(ids) - base(ids)).max()) > 1e-2
    assert float(mx.abs(fused(ids) - tuned(ids)).max()) < 1e-3
