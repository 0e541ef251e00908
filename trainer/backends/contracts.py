"""What a training backend promises: the run-level surface `train.run_training` dispatches to, and the step-level
surface the torch loop (`train._Loop`) drives.

Two levels because the two frameworks own different amounts of the loop: on torch penwright runs the steps itself
(`_Loop`, over a `StepBackend`); on MLX mlx-lm's tuner runs them (`mlx_backend.run_mlx_training`). Both end in
the same epilogue (`trainer/epilogue.py`): the adapter in `run_dir/adapter` in the backend's `adapter_format`, the
same RunResult fields, logs and time metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from penwright.trainer.backends.formats import AdapterFormat
from penwright.trainer.runs import RunResult
from penwright.trainer.settings import ModelSettings, TrainingSettings


@runtime_checkable
class TrainingBackend(Protocol):
    """One framework's way to train an adapter into a run folder (resuming when the folder has a checkpoint)."""

    name: str  # "cuda" | "cpu" | "mlx": RunResult.backend
    adapter_format: AdapterFormat  # what run_dir/adapter holds (trainer/backends/formats.py)

    def train(
        self,
        dataset_dir: Path,
        settings: TrainingSettings,
        base_model: str,
        run_dir: Path,
        *,
        model_settings: ModelSettings,
        on_progress: Callable[[dict], None] | None,
        should_stop: Callable[[], bool] | None,
        init_adapter: Path | None,
    ) -> RunResult: ...


@runtime_checkable
class StepBackend(Protocol):
    """A model with a trainable adapter, driven one optimizer step at a time (torch_backend.TorchBackend)."""

    device: str
    precision: str
    settings: TrainingSettings
    model: Any
    tokenizer: Any

    def load(self, init_adapter: Path | None = None) -> StepBackend: ...
    def collate(self, rows) -> dict: ...
    def loss_sums(self, batch: dict, kl: bool = True) -> tuple: ...
    def evaluate(self, batches: list[dict]) -> float | None: ...
    def trainable_parameters(self): ...
    def save(self, folder: Path) -> Path: ...
    def load_adapter_weights(self, folder: Path) -> None: ...
    def peak_memory_bytes(self) -> int: ...
