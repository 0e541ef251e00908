"""The serving engine: one thread owns the model (see core.py); backends for torch (CUDA/CPU) and MLX."""

from __future__ import annotations

from penwright.server.engine.core import Engine, RequestError, check_adapter_name
from penwright.server.engine.types import (
    BASE,
    LIVE,
    Channel,
    Delta,
    Finished,
    GenerationRequest,
    SamplingParams,
    Started,
)

__all__ = [
    "Engine",
    "RequestError",
    "check_adapter_name",
    "BASE",
    "LIVE",
    "Channel",
    "Delta",
    "Finished",
    "GenerationRequest",
    "SamplingParams",
    "Started",
    "make_backend",
]


def make_backend(
    model_path: str,
    backend: str = "auto",
    quantization: str = "none",
    dtype: str = "auto",
    max_context_tokens: int | None = None,
    merge_live: bool | str = "auto",
    static_decode: bool | str = "auto",
    static_tokens: int = 4096,
    static_lookahead: bool | str = "auto",
    adapter_spares: int | str = "auto",
):
    """TorchBackend for cuda/cpu, MlxBackend for mlx ("auto": MLX only on Apple Silicon without CUDA).
    `static_decode` / `static_tokens` / `static_lookahead`: the torch backend's static-KV, CUDA-graph decoding
    (static_decode.py). `adapter_spares`: spare LoRA slots beside the first adapter (peft_slots.py)."""
    if backend == "mlx" or (backend == "auto" and _apple_silicon()):
        from penwright.server.engine.mlx_backend import MlxBackend

        return MlxBackend(model_path, max_context_tokens=max_context_tokens)
    from penwright.server.engine.torch_backend import TorchBackend

    device = {"cuda": "cuda", "cpu": "cpu"}.get(backend, "auto")
    return TorchBackend(
        model_path,
        device=device,
        dtype=dtype,
        quantization=quantization,
        max_context_tokens=max_context_tokens,
        merge_live=merge_live,
        static_decode=static_decode,
        static_tokens=static_tokens,
        static_lookahead=static_lookahead,
        adapter_spares=adapter_spares,
    )


def _apple_silicon() -> bool:
    import platform

    return platform.system() == "Darwin" and platform.machine() == "arm64"
