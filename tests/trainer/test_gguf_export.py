"""GGUF export with the `gguf` package, read back with its reader, and loaded by a real llama.cpp
(llama-cpp-python, built from source) whose greedy tokens must match the PyTorch model's.

The llama.cpp tests skip when llama_cpp is not installed; `scripts/llamacpp-roundtrip.sh` builds it and runs
them all, the 31M model ones included (marked slow).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

PROMPT = "The keeper said that"
STEPS = 10


def train_lora(model_dir: Path, out: Path, text: str, rslora: bool = False, lr: float = 2e-3, steps: int = 12) -> Path:
    """A PEFT LoRA trained for real (a few steps on one repeated sentence): it leans towards `text`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        use_rslora=rslora,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, cfg)
    ids = torch.tensor([tok.encode(text * 8)[:96]])
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        peft_model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.save_pretrained(out)
    return out


def torch_greedy(model_dir: Path, adapter: Path | None, ids: list[int], n: int = STEPS) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(ids) :].tolist()


def llama_greedy(model_gguf: Path, lora: Path | None, ids: list[int], n: int = STEPS) -> list[int]:
    from llama_cpp import Llama

    kwargs = {"model_path": str(model_gguf), "n_ctx": 256, "n_threads": 2, "verbose": False}
    if lora is not None:
        kwargs["lora_path"] = str(lora)
    llm = Llama(**kwargs)
    out: list[int] = []
    for tok in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        out.append(tok)
        if len(out) == n:
            break
    llm.close()
    return out


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory) -> Path:
    return train_lora(
        tiny_model_dir,
        tmp_path_factory.mktemp("lora") / "lighthouse",
        "Maren climbed the lighthouse stairs and lit the lamp. ",
        lr=3e-2,
    )


def read(path: Path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: f.contents() for name, f in reader.fields.items()}
    return fields, {t.name: t for t in reader.tensors}


def test_adapter_gguf_is_llamacpps_lora_format(tiny_model_dir, adapter, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file

    from penwright.trainer.gguf_export import base_config, write_adapter_gguf

    path = write_adapter_gguf(base_config(str(tiny_model_dir)), adapter, tmp_path / "adapter.gguf")
    fields, tensors = read(path)
    assert fields["general.architecture"] == "qwen2" and fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora" and fields["adapter.lora.alpha"] == 16.0
    peft = load_file(str(adapter / "adapter_model.safetensors"))
    assert len(tensors) == len(peft)
    a = peft["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"]  # (r, in)
    b = peft["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"]  # (out, r)
    ga, gb = tensors["blk.1.attn_q.weight.lora_a"], tensors["blk.1.ffn_down.weight.lora_b"]
    assert list(ga.shape) == [a.shape[1], a.shape[0]] and list(gb.shape) == [b.shape[1], b.shape[0]]  # ne order
    np.testing.assert_array_equal(np.asarray(ga.data).reshape(a.shape), a)
    np.testing.assert_array_equal(np.asarray(gb.data).reshape(b.shape), b)


def test_rslora_alpha_keeps_the_scale(tiny_model_dir, tmp_path):
    from penwright.trainer.gguf_export import base_config, write_adapter_gguf

    ad = train_lora(tiny_model_dir, tmp_path / "rs", "Edwin sailed. ", rslora=True, steps=1)
    fields, _ = read(write_adapter_gguf(base_config(str(tiny_model_dir)), ad, tmp_path / "rs.gguf"))
    assert math.isclose(fields["adapter.lora.alpha"] / 8, 16 / math.sqrt(8), rel_tol=1e-6)  # llama.cpp: alpha / r


def test_model_gguf_carries_weights_and_tokenizer(tiny_model_dir, tmp_path):
    from penwright.trainer.gguf_export import write_model_gguf

    fields, tensors = read(write_model_gguf(tiny_model_dir, tmp_path / "base.gguf"))
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tok = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert fields["qwen2.block_count"] == config["num_hidden_layers"]
    assert fields["qwen2.embedding_length"] == config["hidden_size"]
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == config["vocab_size"]
    assert all(tokens[i] == t for t, i in tok["model"]["vocab"].items())
    assert len(fields["tokenizer.ggml.merges"]) == len(tok["model"]["merges"])
    assert "blk.0.attn_q.bias" in tensors and "token_embd.weight" in tensors
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd


def test_unsupported_architecture_is_named(tmp_path):
    from penwright.errors import PenwrightError
    from penwright.trainer.gguf_export import write_adapter_gguf

    with pytest.raises(PenwrightError, match="convert_lora_to_gguf"):
        write_adapter_gguf({"architectures": ["MambaForCausalLM"]}, tmp_path, tmp_path / "x.gguf")


def roundtrip(model_dir: Path, adapter: Path, out: Path) -> None:
    """Base, base + adapter and merged: llama.cpp's greedy tokens equal PyTorch's (and PEFT's)."""
    from transformers import AutoTokenizer

    from penwright.trainer.export import export_gguf

    ids = AutoTokenizer.from_pretrained(model_dir).encode(PROMPT, add_special_tokens=False)
    files = export_gguf(str(model_dir), adapter, out / "split")
    merged = export_gguf(str(model_dir), adapter, out / "merged", merged=True)["model"]
    base_tokens = torch_greedy(model_dir, None, ids)
    adapter_tokens = torch_greedy(model_dir, adapter, ids)
    assert adapter_tokens != base_tokens  # the adapter really changes what is generated
    assert llama_greedy(files["base"], None, ids) == base_tokens
    assert llama_greedy(files["base"], files["adapter"], ids) == adapter_tokens
    assert llama_greedy(merged, None, ids) == adapter_tokens


def test_llamacpp_roundtrip_tiny(tiny_model_dir, adapter, tmp_path):
    pytest.importorskip("llama_cpp")
    roundtrip(tiny_model_dir, adapter, tmp_path)


@pytest.mark.slow
def test_llamacpp_roundtrip_31m(gutenberg_31m, tmp_path):
    pytest.importorskip("llama_cpp")
    adapter = train_lora(gutenberg_31m, tmp_path / "lora", "Maren climbed the lighthouse stairs and lit the lamp. ")
    roundtrip(gutenberg_31m, adapter, tmp_path)


def test_model_gguf_in_f16(tiny_model_dir, tmp_path):
    """f16 (what auto picks above 1B parameters): matrices in f16, norms and biases in f32."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    from penwright.trainer.gguf_export import write_model_gguf

    _, tensors = read(write_model_gguf(tiny_model_dir, tmp_path / "f16.gguf", outtype="f16"))
    assert tensors["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.attn_q.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    hf = load_file(str(tiny_model_dir / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]
    q = np.asarray(tensors["blk.0.attn_q.weight"].data).reshape(hf.shape)
    np.testing.assert_allclose(q.astype(np.float32), hf, rtol=1e-3, atol=1e-4)
