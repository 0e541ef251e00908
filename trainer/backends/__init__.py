"""Training backends: one small surface (load, loss/train step, evaluate, save, load adapter) per framework.

`torch_backend` runs on CUDA (bf16, 4/8-bit bitsandbytes bases) and on the CPU;
`mlx_backend` drives mlx-lm's tuner on Apple Silicon (and on Linux with mlx[cpu]).
"""

from __future__ import annotations

import importlib.util
import platform

from penwright.errors import TrainingError


def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def mlx_available() -> bool:
    return importlib.util.find_spec("mlx") is not None and importlib.util.find_spec("mlx_lm") is not None


def pick_backend(choice: str) -> str:
    """`auto` -> cuda, then mlx on Apple Silicon, then cpu. Explicit choices are checked."""
    if choice == "auto":
        if cuda_available():
            return "cuda"
        if platform.system() == "Darwin" and platform.machine() == "arm64" and mlx_available():
            return "mlx"
        return "cpu"
    if choice == "cuda" and not cuda_available():
        raise TrainingError("model.backend is cuda but no CUDA GPU is available.", "Set model.backend: auto (or cpu).")
    if choice == "mlx" and not mlx_available():
        raise TrainingError("model.backend is mlx but mlx-lm is not installed.", "pip install 'penwright[mlx]'.")
    return choice


def quantization_available(kind: str) -> bool:
    """4/8-bit training needs CUDA: bitsandbytes imports (and even loads 4-bit) on CPU, so its import proves nothing."""
    return kind == "none" or (cuda_available() and importlib.util.find_spec("bitsandbytes") is not None)
