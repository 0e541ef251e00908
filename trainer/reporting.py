"""Training curves for TensorBoard: a small progress callback around the one the run already has.

`reporter(settings.report_to, run_dir)` returns None or a TensorBoardReport; `report.wrap(on_progress)` is the
callback the loop calls with each step's figures ({step, loss, eval_loss, lr, tokens_per_s, ...}): it writes
them under `run_dir/tensorboard/` and passes them on unchanged (the dashboard and the CLI progress bar read the
same dicts). Event files are written locally; nothing leaves the machine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from penwright.errors import TrainingError

SCALARS = {
    "loss": "train/loss",
    "eval_loss": "eval/loss",
    "lr": "train/learning_rate",
    "tokens_per_s": "train/tokens_per_second",
}


class TensorBoardReport:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def write(self, figures: dict) -> None:
        step = figures.get("step")
        for key, tag in SCALARS.items():
            value = figures.get(key)
            if value is not None and step is not None:
                self.writer.add_scalar(tag, float(value), int(step))

    def wrap(self, inner: Callable[[dict], None] | None) -> Callable[[dict], None]:
        def progress(figures: dict) -> None:
            self.write(figures)
            if inner is not None:
                inner(figures)

        return progress

    def close(self) -> None:
        self.writer.close()


def reporter(report_to: str, run_dir: Path | str) -> TensorBoardReport | None:
    """The run's reporter for `training.report_to` (auto: TensorBoard when installed), or None."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if report_to == "none" or (report_to == "auto" and not installed):
        return None
    if not installed:
        raise TrainingError(
            "report_to is tensorboard but the tensorboard package is not installed.",
            "pip install 'penwright[tensorboard]', or train with --report-to none.",
        )
    return TensorBoardReport(Path(run_dir) / "tensorboard")
