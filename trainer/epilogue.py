"""The end of a training run, the same for every backend (torch's `train._Loop`, `mlx_backend.run_mlx_training`):

    result = finish_run(run, RunEnd(...), write_adapter, clock)

writes `run_dir/adapter` (through a temporary folder, so a reader never sees half of it) and checks it holds the
format the backend declares, then the log (`train_log.csv`/`.json`), `time_metrics.json` and `result.json`, and
returns the RunResult. The daemon's training child and `penwright train` read the same fields whatever trained.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from penwright.errors import TrainingError
from penwright.trainer.backends.formats import AdapterFormat, adapter_format
from penwright.trainer.runs import Clock, RunDir, RunResult

STATUS = {"cancelled": "cancelled", "max_steps": "completed", "epochs": "completed"}  # any other reason: "stopped"


@dataclass
class RunEnd:
    """What a backend knows when its loop stops."""

    reason: str  # max_steps | epochs | time_cap | plateau | early_stop | cancelled
    steps: int
    total_steps: int
    train_loss: float | None  # smoothed (the plateau rule's EMA)
    eval_loss: float | None  # the final held-out loss, None without validation rows
    best_eval_loss: float | None
    backend: str  # cuda | cpu | mlx
    adapter_format: AdapterFormat
    log: list[dict]  # train_log rows (runs.LOG_FIELDS)
    train_s: float  # seconds spent in training steps
    tokens: int
    peak_memory_bytes: int
    precision: str | None
    train_rows: int
    truncated_rows: int
    padding_share: float | None = None  # None where the backend pads its own way (mlx-lm)
    oom_rungs: list[str] = field(default_factory=list)


def write_adapter_dir(run: RunDir, write: Callable[[Path], object]) -> Path:
    """`run_dir/adapter`, written by `write(folder)` into a temporary folder first, then renamed into place."""
    target, tmp = run.path / "adapter", run.path / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def time_metrics(end: RunEnd, clock: Clock) -> dict:
    total = clock.elapsed()
    return {
        "setup_s": round(total - clock.train_elapsed(), 3),
        "setup_split": clock.setup_split,
        "train_s": round(end.train_s, 3),
        "total_s": round(total, 3),
        "steps": end.steps,
        "steps_per_s": round(end.steps / max(end.train_s, 1e-9), 4),
        "tokens": end.tokens,
        "tokens_per_s": round(end.tokens / max(end.train_s, 1e-9), 1),
        "peak_memory_bytes": end.peak_memory_bytes,
        "device": end.backend,
        "precision": end.precision,
        "padding_share": end.padding_share,
    }


def finish_run(run: RunDir, end: RunEnd, write_adapter: Callable[[Path], object], clock: Clock) -> RunResult:
    """Write the adapter, the log, the time metrics and the result; return the result."""
    adapter = write_adapter_dir(run, write_adapter)
    found = adapter_format(adapter)
    if found != end.adapter_format:
        raise TrainingError(f"the {end.backend} backend wrote a {found} adapter, not {end.adapter_format}: {adapter}")
    run.write_logs(end.log)
    metrics = time_metrics(end, clock)
    run.write_json("time_metrics.json", metrics)
    result = RunResult(
        run_id=run.run_id,
        run_dir=run.path,
        adapter_dir=adapter,
        status=STATUS.get(end.reason, "stopped"),
        stop_reason=end.reason,
        steps=end.steps,
        total_steps=end.total_steps,
        train_loss=end.train_loss,
        eval_loss=end.eval_loss,
        best_eval_loss=end.best_eval_loss,
        backend=end.backend,
        oom_rung=end.oom_rungs[-1] if end.oom_rungs else None,
        metrics={
            **metrics,
            "train_rows": end.train_rows,
            "truncated_rows": end.truncated_rows,
            "oom_rungs": list(end.oom_rungs),
        },
        adapter_format=end.adapter_format,
    )
    run.write_json("result.json", result.to_dict())
    return result
