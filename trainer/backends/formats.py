"""Adapter folder formats, and the same LoRA/DoRA weights moved between them.

`peft`: `adapter_config.json` + `adapter_model.safetensors` (the torch backend; served by transformers + PEFT).
`mlx`:  `adapter_config.json` + `adapters.safetensors` (the MLX backend; mlx-lm's layout).

Both hold the same adapter math, y = W x + s * B A x (DoRA: rescaled per output row by m / ||W + s B A||), in two
layouts. For a module at path P (mlx-lm names its modules as Hugging Face does, `model.layers.0.self_attn.q_proj`):

    mlx-lm                         PEFT
    P.lora_a   (in, r)             base_model.model.P.lora_A.weight        (r, in)   = lora_a.T
    P.lora_b   (r, out)            base_model.model.P.lora_B.weight        (out, r)  = lora_b.T
    P.m        (out,)              base_model.model.P.lora_magnitude_vector (out,)
    lora_parameters.scale = s      lora_alpha / r = s  (use_rslora: lora_alpha / sqrt(r))

so a conversion changes no number: the gate measures an MLX adapter on torch with the torch adapter's code, and the
MLX engine serves an adapter trained with torch.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Literal

from penwright.errors import TrainingError

AdapterFormat = Literal["peft", "mlx"]
MLX_WEIGHTS = "adapters.safetensors"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_MLX_PARTS = {"lora_a": "lora_A.weight", "lora_b": "lora_B.weight", "m": "lora_magnitude_vector"}
_PEFT_PARTS = {v: k for k, v in _MLX_PARTS.items()}
_LAYER = re.compile(r"\.layers\.(\d+)\.(.+)$")


def adapter_format(path: Path | str) -> AdapterFormat | None:
    """The format of an adapter folder, from its files; None when it is neither."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        return None
    if (path / MLX_WEIGHTS).is_file():
        return "mlx"
    if (path / PEFT_WEIGHTS).is_file() or (path / "adapter_model.bin").is_file():
        return "peft"
    return None


def mlx_to_peft_weights(config: dict, weights: dict) -> tuple[dict, dict]:
    """mlx-lm adapter config and weights -> (LoraConfig keyword arguments, PEFT state dict). Arrays of any framework
    with `.T` (torch tensors, mx arrays, numpy)."""
    kind = config.get("fine_tune_type", "lora")
    if kind not in ("lora", "dora"):
        raise TrainingError(f"an mlx-lm {kind!r} adapter has no PEFT form", "Only LoRA and DoRA adapters convert.")
    params = config["lora_parameters"]
    out, modules = {}, set()
    for name, array in weights.items():
        module, _, part = name.rpartition(".")
        if part not in _MLX_PARTS:
            raise TrainingError(f"unexpected tensor {name!r} in an mlx-lm adapter", "Only LoRA and DoRA convert.")
        modules.add(module)
        out[f"{PEFT_PREFIX}{module}.{_MLX_PARTS[part]}"] = array if part == "m" else array.T
    rank = int(params["rank"])
    lora = {
        "r": rank,
        "lora_alpha": float(params["scale"]) * rank,  # PEFT's scaling is lora_alpha / r
        "lora_dropout": float(params.get("dropout", 0.0)),
        "target_modules": sorted(modules),  # full module paths: exactly the modules that have weights
        "use_dora": kind == "dora",
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }
    return lora, out


def peft_to_mlx_weights(config: dict, weights: dict) -> tuple[dict, dict]:
    """PEFT adapter config and state dict -> (mlx-lm adapter config, mlx-lm weights). The adapter must cover the
    same modules in every layer from the first (what `penwright train` writes), as mlx-lm wraps the last
    `num_layers` layers alike."""
    if config.get("peft_type", "LORA") != "LORA":
        raise TrainingError(f"a PEFT {config.get('peft_type')} adapter has no mlx-lm form", "Only LoRA converts.")
    if config.get("modules_to_save") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise TrainingError(
            "this PEFT adapter saves whole modules or varies rank/alpha per module: mlx-lm has no such form",
            "Retrain it with the MLX backend.",
        )
    out, per_layer = {}, {}
    for name, array in weights.items():
        part = next((p for p in _PEFT_PARTS if name.endswith("." + p)), None)
        if part is None or not name.startswith(PEFT_PREFIX):
            raise TrainingError(f"unexpected tensor {name!r} in a PEFT adapter", "Only LoRA and DoRA convert.")
        module = name[len(PEFT_PREFIX) : -len(part) - 1]
        found = _LAYER.search(module)
        if found is None:
            raise TrainingError(f"{module} is outside the transformer blocks", "mlx-lm adapts block layers only.")
        per_layer.setdefault(int(found.group(1)), set()).add(found.group(2))
        mlx_part = _PEFT_PARTS[part]
        out[f"{module}.{mlx_part}"] = array if mlx_part == "m" else array.T
    keys = sorted(set().union(*per_layer.values())) if per_layer else []
    if sorted(per_layer) != list(range(len(per_layer))) or any(sorted(v) != keys for v in per_layer.values()):
        raise TrainingError(
            "this PEFT adapter covers different modules in different layers: mlx-lm has no such form",
            "Retrain it with the MLX backend.",
        )
    rank, dropout = int(config["r"]), float(config.get("lora_dropout", 0.0))
    scale = float(config["lora_alpha"]) / (math.sqrt(rank) if config.get("use_rslora") else rank)
    mlx = {
        "fine_tune_type": "dora" if config.get("use_dora") else "lora",
        "num_layers": len(per_layer),
        "lora_parameters": {"rank": rank, "scale": scale, "dropout": dropout, "keys": keys},
        "model": config.get("base_model_name_or_path"),
    }
    return mlx, out


def mlx_to_peft(adapter_dir: Path | str, out_dir: Path | str, base_model: str | None = None) -> Path:
    """Write the PEFT folder of an mlx-lm adapter folder (the same weights); returns `out_dir`."""
    from peft import LoraConfig
    from safetensors.torch import load_file, save_file

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    lora, weights = mlx_to_peft_weights(config, load_file(str(adapter_dir / MLX_WEIGHTS)))
    out_dir.mkdir(parents=True, exist_ok=True)
    LoraConfig(base_model_name_or_path=base_model or config.get("model"), **lora).save_pretrained(str(out_dir))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out_dir / PEFT_WEIGHTS), metadata={"format": "pt"})
    return out_dir


def peft_to_mlx(adapter_dir: Path | str) -> tuple[dict, dict]:
    """(mlx-lm adapter config, {name: mx.array}) of a PEFT adapter folder (the same weights)."""
    import mlx.core as mx

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / PEFT_WEIGHTS).is_file():
        raise TrainingError(f"{adapter_dir} has no {PEFT_WEIGHTS}", "Save the adapter with safetensors.")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return peft_to_mlx_weights(config, mx.load(str(adapter_dir / PEFT_WEIGHTS)))
