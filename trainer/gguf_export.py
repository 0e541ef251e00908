"""GGUF files for llama.cpp and Ollama, written with the `gguf` package the way llama.cpp's converters do.

- `write_adapter_gguf`: a PEFT LoRA adapter as llama.cpp's `convert_lora_to_gguf.py` writes one:
  `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted weight
  `<base tensor name>.lora_a` (PEFT's lora_A, (r, in)) and `.lora_b` (lora_B, (out, r)). llama.cpp scales
  by alpha / r; an rsLoRA adapter (alpha / sqrt(r)) is written with alpha x sqrt(r) so the scale is the same.
- `write_model_gguf`: a Hugging Face model folder (a base, or an adapter merged into it) as a GGUF model,
  with its byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`), as `convert_hf_to_gguf.py` does.

Architectures: the Qwen2 family (Qwen2 / Qwen2.5 and the builtin:tiny model), whose tensors llama.cpp
takes as they are. Others get an error that names llama.cpp's own converter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from penwright.errors import PenwrightError

SUPPORTED = {"Qwen2ForCausalLM": "qwen2"}


class GgufExportError(PenwrightError):
    pass


def _arch(config: dict) -> str:
    name = (config.get("architectures") or ["?"])[0]
    if name not in SUPPORTED:
        raise GgufExportError(
            f"GGUF export supports {', '.join(SUPPORTED)} models; this base is {name}.",
            "Convert it with llama.cpp's convert_hf_to_gguf.py / convert_lora_to_gguf.py.",
        )
    return SUPPORTED[name]


def _name_map(arch: str, n_blocks: int):
    import gguf

    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    return gguf.get_tensor_name_map(arch_id, n_blocks)


def _gguf_name(names, hf_name: str) -> str:
    out = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if out is None:
        raise GgufExportError(f"no GGUF tensor name for {hf_name}")
    return out


# ---- adapters ------------------------------------------------------------------------------------------------


def _lora_pairs(weights: dict) -> dict[str, dict[str, object]]:
    """PEFT adapter weights -> {base weight name: {"A": tensor, "B": tensor}}."""
    pairs: dict[str, dict[str, object]] = {}
    for key, tensor in weights.items():
        if ".lora_A." not in key and ".lora_B." not in key:
            raise GgufExportError(
                f"adapter tensor {key} is not a LoRA A/B weight (DoRA magnitudes, trained "
                "embeddings or modules_to_save cannot go to llama.cpp)"
            )
        base = key.replace("base_model.model.", "", 1)
        which = "A" if ".lora_A." in base else "B"
        base = base.replace(".lora_A.weight", ".weight").replace(".lora_B.weight", ".weight")
        pairs.setdefault(base, {})[which] = tensor
    return pairs


def base_config(base_model: str) -> dict:
    """The base model's config.json as a dict (a local folder, or a hub id from the local cache)."""
    if (Path(base_model) / "config.json").is_file():
        return json.loads((Path(base_model) / "config.json").read_text(encoding="utf-8"))
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(base_model).to_dict()


def write_adapter_gguf(config: dict, adapter_dir: Path | str, out: Path | str) -> Path:
    """`adapter_dir` (PEFT LoRA on a base with this `config`) -> `out` (.gguf), for llama.cpp's `--lora` and
    Ollama's `ADAPTER`."""
    import gguf
    from safetensors.torch import load_file

    adapter_dir, out = Path(adapter_dir), Path(out)
    arch = _arch(config)
    lora = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if lora.get("use_dora"):
        raise GgufExportError("DoRA adapters cannot be loaded by llama.cpp.", "Train with method lora to export.")
    names = _name_map(arch, config["num_hidden_layers"])
    alpha = float(lora["lora_alpha"]) * (math.sqrt(lora["r"]) if lora.get("use_rslora") else 1.0)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(adapter_dir.name)
    for base, ab in sorted(_lora_pairs(load_file(str(adapter_dir / "adapter_model.safetensors"))).items()):
        if set(ab) != {"A", "B"}:
            raise GgufExportError(f"{base}: the adapter has only lora_{''.join(ab)}")
        name = _gguf_name(names, base)
        writer.add_tensor(f"{name}.lora_a", ab["A"].float().numpy())  # (r, in): ne = [in, r]
        writer.add_tensor(f"{name}.lora_b", ab["B"].float().numpy())  # (out, r): ne = [r, out]
    _finish(writer)
    return out


# ---- models --------------------------------------------------------------------------------------------------


def _hparams(writer, config: dict) -> None:
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads", config["num_attention_heads"]))
    rope = config.get("rope_parameters") or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))


def _vocab(writer, model_dir: Path, vocab_size: int) -> None:
    """Byte-level BPE as convert_hf_to_gguf's gpt2 vocab: tokens by id, their types, merges, special ids."""
    import gguf

    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tok["model"]["type"] != "BPE":
        raise GgufExportError(f"GGUF export needs a BPE tokenizer; {model_dir} has {tok['model']['type']}")
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            special = added.get(i, {}).get("special")
            types.append(
                gguf.TokenType.CONTROL
                if special
                else gguf.TokenType.USER_DEFINED
                if i in added
                else gguf.TokenType.NORMAL
            )
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # ByteLevel with the GPT-2 split pattern, as builtin:tiny and Qwen use
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer)


F32_UP_TO_PARAMS = 1_000_000_000  # "auto": f32 up to 1B parameters (exact), f16 above (a 7B model in f32 is 28 GB)


def params_in(files: list[Path]) -> int:
    """Parameters stored in these safetensors files (read from their headers)."""
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def write_model_gguf(model_dir: Path | str, out: Path | str, outtype: str = "auto") -> Path:
    """A Hugging Face model folder (safetensors) -> a GGUF model llama.cpp and Ollama load.

    `outtype`: f32, f16 (matrices in f16, norms and biases in f32, as llama.cpp's converter writes MOSTLY_F16),
    or auto. Tensors go through a temporary file, so memory holds about one tensor at a time."""
    import gguf
    import torch
    from safetensors import safe_open

    model_dir, out = Path(model_dir), Path(out)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = _arch(config)
    names = _name_map(arch, config["num_hidden_layers"])
    files = sorted(model_dir.glob("*.safetensors"))
    if outtype == "auto":
        outtype = "f32" if params_in(files) <= F32_UP_TO_PARAMS else "f16"
    writer = gguf.GGUFWriter(str(out), arch, use_temp_file=True)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.name)
    _hparams(writer, config)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    _vocab(writer, model_dir, config["vocab_size"])
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # llama.cpp uses token_embd for the output when `output` is absent
                tensor = f.get_tensor(key)
                dtype = torch.float16 if outtype == "f16" and tensor.dim() > 1 else torch.float32
                writer.add_tensor(_gguf_name(names, key), tensor.to(dtype).numpy())
    _finish(writer)
    return out


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
