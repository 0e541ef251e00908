"""A run's folder: `runs/<id>/` with config.yaml, checkpoints, train_log.csv/json, time_metrics.json, result.json.

Checkpoints are written to `checkpoints/.tmp-step-N/`, fsynced, then renamed to
`checkpoints/step-N/` (a kill -9 mid-write leaves only a `.tmp-` folder, ignored and
swept on resume). Each holds `adapter/` (a standard PEFT folder), `state.pt`
(optimizer, scheduler, step, data position, RNG, stop-rule state, log) and `meta.json`.
The latest checkpoint (for resume) and the best `keep_best` by eval loss are kept.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from penwright.trainer.registry import fsync_dir, fsync_tree

log = logging.getLogger(__name__)
LOG_FIELDS = ["step", "epoch", "loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"]


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


@dataclass
class RunResult:
    """What `run_training` returns (and writes to result.json)."""

    run_id: str
    run_dir: Path
    adapter_dir: Path  # the adapter to publish: the best checkpoint by eval loss, or the final weights
    status: str  # completed | stopped | cancelled
    stop_reason: str  # max_steps | epochs | time_cap | plateau | early_stop | cancelled
    steps: int
    total_steps: int
    train_loss: float | None
    eval_loss: float | None
    best_eval_loss: float | None
    backend: str
    oom_rung: str | None = None
    metrics: dict = field(default_factory=dict)
    adapter_format: str = "peft"  # of adapter_dir: "peft" | "mlx" (trainer/backends/formats.py)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["run_dir"], d["adapter_dir"] = str(self.run_dir), str(self.adapter_dir)
        return d


def checkpoint_problem(path: Path) -> str | None:
    """None when a checkpoint's adapter weights and training state load; else which file fails and why."""
    import torch
    from safetensors.torch import load_file

    files = sorted((path / "adapter").glob("*.safetensors"))
    if not files:
        return f"{path / 'adapter'} holds no .safetensors weights"
    for f in [*files, path / "state.pt"]:
        try:
            load_file(f) if f.suffix == ".safetensors" else torch.load(f, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 (any failure to load means: do not resume from it)
            return f"{f.name}: {err or type(err).__name__}"
    return None


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.path / "checkpoints"
        self.checkpoints.mkdir(exist_ok=True)

    @property
    def run_id(self) -> str:
        return self.path.name

    def write_config(self, resolved: dict) -> None:
        """The resolved configuration beside the outputs (settings, base model, dataset, backend)."""
        text = yaml.safe_dump(resolved, sort_keys=False)
        _atomic_write(self.path / "config.yaml", text)

    # -- checkpoints -----------------------------------------------------------------------------------------

    def complete_checkpoints(self) -> list[tuple[int, Path, dict]]:
        found = []
        for p in self.checkpoints.glob("step-*"):
            meta = p / "meta.json"
            if p.is_dir() and meta.is_file() and (p / "state.pt").is_file():
                found.append((int(p.name.split("-", 1)[1]), p, json.loads(meta.read_text())))
        return sorted(found, key=lambda t: t[0])

    def latest_checkpoint(self) -> tuple[int, Path, dict] | None:
        done = self.complete_checkpoints()
        return done[-1] if done else None

    def usable_checkpoint(self) -> tuple[int, Path, dict] | None:
        """The latest checkpoint whose files all load; a damaged one (truncated by a full disk, a kill during a
        copy...) is renamed `.damaged-step-N` with the reason logged, and the one before it is tried."""
        for step, path, meta in reversed(self.complete_checkpoints()):
            problem = checkpoint_problem(path)
            if problem is None:
                return step, path, meta
            log.warning("checkpoint %s cannot be used (%s); trying the one before it", path, problem)
            os.replace(path, path.with_name(f".damaged-{path.name}"))
        return None

    def write_checkpoint(self, step: int, save_adapter, state: dict, meta: dict, keep_best: int) -> Path:
        import torch

        for stale in self.checkpoints.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.checkpoints / f".tmp-step-{step}"
        save_adapter(tmp / "adapter")
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1))
        fsync_tree(tmp)
        final = self.checkpoints / f"step-{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.checkpoints)
        self.prune(keep_best)
        return final

    def best_checkpoint(self) -> tuple[int, Path, dict] | None:
        scored = [c for c in self.complete_checkpoints() if c[2].get("eval_loss") is not None]
        return min(scored, key=lambda c: (c[2]["eval_loss"], -c[0])) if scored else None

    def prune(self, keep_best: int) -> None:
        done = self.complete_checkpoints()
        if not done:
            return
        keep = {done[-1][0]}
        scored = sorted((c for c in done if c[2].get("eval_loss") is not None), key=lambda c: c[2]["eval_loss"])
        keep |= {c[0] for c in scored[:keep_best]}
        for step, path, _ in done:
            if step not in keep:
                shutil.rmtree(path, ignore_errors=True)

    # -- logs ----------------------------------------------------------------------------------------------------

    def write_logs(self, rows: list[dict]) -> None:
        tmp = self.path / ".train_log.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path / "train_log.csv")
        _atomic_write(self.path / "train_log.json", json.dumps(rows, indent=1))

    def write_json(self, name: str, data: dict) -> None:
        _atomic_write(self.path / name, json.dumps(data, indent=1, default=str))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Clock:
    """Setup/train wall-clock split for time_metrics.json."""

    def __init__(self):
        self.start = time.monotonic()
        self.train_start: float | None = None
        self.setup_split: dict[str, float] = {}  # seconds of each named part of the setup, in order
        self._last = self.start

    def mark(self, part: str) -> None:
        """The setup's part `part` ends now (its seconds: since the previous mark, or the start)."""
        now = time.monotonic()
        self.setup_split[part] = round(now - self._last, 3)
        self._last = now

    def begin_training(self) -> None:
        self.train_start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def train_elapsed(self) -> float:
        return time.monotonic() - (self.train_start or self.start)
