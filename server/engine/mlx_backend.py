"""mlx-lm backend (Apple Silicon; also runs on CPU through mlx[cpu]). Runs only on the engine thread.

mlx-lm wraps linear layers in LoRA layers whose weights and `scale` are plain
attributes; adapters loaded side by side are kept as weight sets, and activating
one assigns its arrays and scale into the layers (cheap: no copy). The graph of a
decode step captures the weights and scale it was built with, so interleaving
sequences with different adapters does not mix them. Adapters with a different
LoRA shape (rank, layers, keys) re-wrap the model when they become active.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from penwright.errors import ModelNotFoundError, ServeError
from penwright.server.engine.text import HFTokenizerText
from penwright.server.engine.types import SamplingParams

log = logging.getLogger(__name__)
MLX_FILE = "adapters.safetensors"


@dataclass
class _MlxAdapter:
    config: dict
    weights: list  # [(parameter name, mx.array)]
    scale: float  # the adapter's own multiplier on top of its configured lora scale

    @property
    def signature(self) -> str:
        c = self.config
        return json.dumps(
            [c.get("fine_tune_type", "lora"), c.get("num_layers"), c.get("lora_parameters")], sort_keys=True
        )


class MlxBackend(HFTokenizerText):
    name = "mlx"
    capabilities: frozenset = frozenset()  # one sequence at a time, none of the optional parts (contracts.py)

    def __init__(self, model_path: str, max_context_tokens: int | None = None):
        self.model_path = model_path
        self._max_context = max_context_tokens
        self._adapters: dict[str, _MlxAdapter] = {}
        self._wrapped: str | None = None  # signature of the LoRA layers in the model now
        self._weights_of: str | None = None  # adapter whose weights sit in those layers
        self._layers: list = []
        self._state: tuple | None = None

    def load(self) -> None:
        from mlx_lm import load

        try:
            self.model, wrapper = load(self.model_path)
        except (OSError, ValueError, FileNotFoundError) as err:
            raise ModelNotFoundError(self.model_path, str(err).splitlines()[0]) from None
        self.tokenizer = wrapper._tokenizer  # the Hugging Face tokenizer inside mlx-lm's wrapper
        config = (
            json.loads((Path(self.model_path) / "config.json").read_text()) if Path(self.model_path).is_dir() else {}
        )
        limit = config.get("max_position_embeddings") or 2048
        self.context_length = min(limit, self._max_context or limit)
        self.eos_ids = set(wrapper.eos_token_ids) | {i for i in [self.tokenizer.eos_token_id] if i is not None}

    def thread_context(self):
        import contextlib

        return contextlib.nullcontext()

    # ---- adapters ------------------------------------------------------------------------------
    def prepare_adapter(self, path: Path) -> str:
        """Check an adapter folder off the engine thread; returns its format. mlx arrays belong to the thread
        that makes them (its stream), so the weights are read in `add_adapter`, on the engine thread."""
        from penwright.trainer.backends.formats import adapter_format

        fmt = adapter_format(path)
        if fmt is None:
            raise ServeError(
                f"{path} is neither an mlx-lm adapter (adapter_config.json + adapters.safetensors) nor a PEFT one.",
                "Adapters are published by `penwright train`; check the registry with `penwright adapters`.",
            )
        if json.loads((Path(path) / "adapter_config.json").read_text()).get("fine_tune_type") == "full":
            raise ServeError(f"{path} holds full fine-tuned weights, not an adapter.")
        return fmt

    def add_adapter(self, name: str, path: Path, scale: float = 1.0, prepared: str | None = None) -> None:
        """An mlx-lm adapter as it is; a PEFT one (trained with torch) converted: the same LoRA weights in mlx-lm's
        layout (trainer/backends/formats.py)."""
        import mlx.core as mx

        from penwright.errors import TrainingError
        from penwright.trainer.backends.formats import peft_to_mlx

        path = Path(path)
        if (prepared or self.prepare_adapter(path)) == "peft":
            try:
                config, weights = peft_to_mlx(path)
            except TrainingError as err:
                raise ServeError(f"{path}: {err.message}", err.hint) from None
        else:
            config, weights = json.loads((path / "adapter_config.json").read_text()), mx.load(str(path / MLX_FILE))
        self._adapters[name] = _MlxAdapter(config, list(weights.items()), scale)
        self._state = None

    def remove_adapter(self, name: str) -> None:
        self._adapters.pop(name, None)
        if self._weights_of == name:
            self._weights_of = None
        self._state = None

    def adapters(self) -> list[str]:
        return list(self._adapters)

    def _wrap(self, adapter: _MlxAdapter | None) -> None:
        from mlx_lm.tuner.utils import linear_to_lora_layers, remove_lora_layers

        if self._wrapped is not None:
            self.model = remove_lora_layers(self.model)
            self._wrapped, self._weights_of, self._layers = None, None, []
        if adapter is not None:
            c = adapter.config
            linear_to_lora_layers(
                self.model, c["num_layers"], c["lora_parameters"], use_dora=c.get("fine_tune_type") == "dora"
            )
            self.model.eval()
            self._layers = [m for _, m in self.model.named_modules() if hasattr(m, "lora_a") and hasattr(m, "scale")]
            self._wrapped = adapter.signature

    def _activate(self, name: str | None, scale: float | None) -> None:
        if self._state == (name, scale):
            return
        if name is None:
            dora = self._wrapped is not None and '"dora"' in self._wrapped
            if dora:  # DoRA's magnitude vector changes the output even at scale 0
                self._wrap(None)
            for layer in self._layers:
                layer.scale = 0.0
        else:
            adapter = self._adapters[name]
            if self._wrapped != adapter.signature:
                self._wrap(adapter)
            if self._weights_of != name:
                self.model.load_weights(adapter.weights, strict=False)
                self._weights_of = name
            lora_scale = adapter.config["lora_parameters"]["scale"] * adapter.scale * (1.0 if scale is None else scale)
            for layer in self._layers:
                layer.scale = lora_scale
        self._state = (name, scale)

    # ---- generation ----------------------------------------------------------------------------
    def open(self, ids: list[int], adapter: str | None, scale: float | None, params: SamplingParams) -> Iterator[int]:
        import mlx.core as mx
        from mlx_lm.generate import generate_step
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        if params.seed is not None:
            mx.random.seed(params.seed)
        sampler = make_sampler(
            temp=params.temperature,
            top_p=params.top_p if params.top_p < 1.0 else 0.0,
            min_p=params.min_p,
            top_k=params.top_k,
        )
        processors = make_logits_processors(
            repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
            presence_penalty=params.presence_penalty or None,
            frequency_penalty=params.frequency_penalty or None,
        )
        self._activate(adapter, scale)
        steps = generate_step(mx.array(ids), self.model, max_tokens=-1, sampler=sampler, logits_processors=processors)
        while True:
            self._activate(adapter, scale)  # the next step's graph is built inside next()
            token, _ = next(steps)
            yield int(token)

    def info(self) -> dict:
        import mlx.core as mx

        info = {
            "backend": self.name,
            "device": str(mx.default_device()),
            "model": self.model_path,
            "context_length": self.context_length,
            "quantization": "none",
        }
        try:
            info["memory_bytes"] = mx.get_active_memory()
        except AttributeError:
            pass
        return info
