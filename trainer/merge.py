"""Merge an adapter into its base: a full checkpoint (safetensors, tokenizer, config) anyone can load.

A PEFT adapter is merged with peft's `merge_and_unload` into a full-precision copy of
the base, never into 4-bit weights: a QLoRA adapter trained on an nf4 base merges into
a bf16 load of the same base (`dtype`, default bf16 for models stored in 16 bits, else
the stored dtype). An mlx-lm adapter is fused with mlx-lm (`fuse()` on its LoRA
layers). The output folder is written to a temp folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from penwright.errors import ModelNotFoundError, TrainingError


def adapter_format(adapter_dir: Path) -> str:
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise TrainingError(
            f"{adapter_dir} is not an adapter folder (no adapter_config.json).",
            "Pass a run's adapter folder or a registry version (`penwright adapters list`).",
        )
    return "mlx" if (adapter_dir / "adapters.safetensors").is_file() else "peft"


def _staging(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TrainingError(f"{out_dir} exists and is not empty.", "Pick a new output folder.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, out_dir: Path) -> Path:
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(tmp, out_dir)
    return out_dir


def merge_adapter(base_model: str, adapter_dir: Path | str, out_dir: Path | str, dtype: str = "auto") -> Path:
    """Write base+adapter as one model folder. Returns `out_dir`."""
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (Path(base_model) / "config.json").is_file():
        raise ModelNotFoundError(str(base_model), "merging needs the base model's folder")
    if adapter_format(adapter_dir) == "mlx":
        return fuse_mlx(base_model, adapter_dir, out_dir)
    return merge_peft(base_model, adapter_dir, out_dir, dtype)


def _merge_dtype(base_model: str, dtype: str):
    import torch

    if dtype != "auto":
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    config = json.loads((Path(base_model) / "config.json").read_text())
    stored = config.get("dtype") or config.get("torch_dtype")
    # a quantized or 16-bit base merges into bf16; a float32 base (builtin:tiny) stays float32
    return torch.float32 if stored == "float32" else torch.bfloat16


def merge_peft(base_model: str, adapter_dir: Path, out_dir: Path, dtype: str = "auto") -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = _staging(out_dir)
    try:
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=_merge_dtype(base_model, dtype))
        if getattr(base.config, "quantization_config", None) is not None:  # a pre-quantized checkpoint
            raise TrainingError(
                f"{base_model} is stored quantized; merging needs the full-precision base.",
                "Point --base at the bf16/fp16 model the 4-bit one was made from.",
            )
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(base_model).save_pretrained(str(tmp))
        (tmp / "penwright_merge.json").write_text(
            json.dumps({"base_model": str(base_model), "adapter": str(adapter_dir)})
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(tmp, out_dir)


def fuse_mlx(base_model: str, adapter_dir: Path, out_dir: Path, dequantize: bool = False) -> Path:
    """mlx-lm's fuse, from Python: LoRA/DoRA layers folded into their linears, saved as an MLX model folder."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import load, save

    tmp = _staging(out_dir)
    try:
        model, tokenizer, config = load(str(base_model), adapter_path=str(adapter_dir), return_config=True)
        fused = [(n, m.fuse(dequantize=dequantize)) for n, m in model.named_modules() if hasattr(m, "fuse")]
        if fused:
            model.update_modules(tree_unflatten(fused))
        save(tmp, str(base_model), model, tokenizer, config, donate_model=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(tmp, out_dir)
