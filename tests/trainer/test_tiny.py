"""builtin:tiny: deterministic, Qwen2 with ChatML and FIM tokens, loadable by transformers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from penwright.trainer.tiny import SPECIAL_TOKENS, build_tiny_model

TEXT = ["The lamp burned all night at the Point, and the keeper watched the sea. " * 20]


def test_tiny_model_is_deterministic(tmp_path):
    a = build_tiny_model(TEXT, tmp_path / "a")
    b = build_tiny_model(TEXT, tmp_path / "b")
    assert a.name == b.name
    for f in ("model.safetensors", "tokenizer.json"):
        assert hashlib.sha256((a / f).read_bytes()).digest() == hashlib.sha256((b / f).read_bytes()).digest()


def test_tiny_model_loads_with_chatml_and_fim(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    ids_of = [tok.convert_tokens_to_ids(special) for special in SPECIAL_TOKENS]
    assert ids_of == list(range(len(SPECIAL_TOKENS)))  # same ids as the 31M base and Qwen-style tokenizers
    assert tok("<|fim_prefix|>a<|fim_suffix|>").input_ids[0] == ids_of[3]
    chat = tok.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    ids = tok("Maren climbed the steps", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "Maren climbed the steps"
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert "demo model" in (tiny_model_dir / "README.md").read_text()


def test_builtin_tiny_is_pinned_after_the_first_build(tmp_path):
    from penwright.trainer.models import resolve_model

    first = resolve_model("builtin:tiny", tmp_path, lambda: TEXT)
    later = resolve_model("builtin:tiny", tmp_path, lambda: ["A different manuscript, written since. " * 30])
    assert later == first  # adapters trained on the first build keep fitting the served model
    assert (tmp_path / "builtin-tiny.txt").read_text() == Path(first).name
