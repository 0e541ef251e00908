"""The dataset keeper: what the daemon does with a batch of file changes.

Manuscript changes re-curate through the workspace (the same call `penwright curate` makes, so both write the
same dataset and share curation's per-file cache); lore changes update the lore index. After each, the keeper
counts the pending words (`trainer.increments`: words in rows the live adapter's run has not seen) and keeps the
dataset's fingerprint, which is what the scheduler's policy reads. It also writes the spec a training child runs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from penwright.server.daemon.watcher import Batch
from penwright.trainer.increments import pending_words, read_rows, seen_rows
from penwright.workspace import Workspace

log = logging.getLogger(__name__)

WARM_LR_SCALE = 0.25  # a warm retrain refines the live adapter on a small set: a quarter of the preset's rate


class DatasetKeeper:
    def __init__(self, workspace: Workspace, registry, publish: Callable[..., object]):
        self.ws, self.registry, self.publish = workspace, registry, publish
        self.settings = workspace.settings
        self.current_dir = workspace.dataset_dir
        self.pending = 0
        self._fingerprint = ""
        self._lock = threading.RLock()
        self._tokenizer = None
        self.curate_seconds: list[float] = []

    def base_model(self) -> str:
        return self.ws.base_model()

    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self.ws.tokenizer()
            return self._tokenizer

    # -- curation ----------------------------------------------------------------------------------------------
    def initial_sync(self) -> None:
        self.base_model()
        self._lore_ready()
        t0 = time.perf_counter()
        with self._lock:
            manifest = self.ws.curate(self.tokenizer())
        self.refresh_pending()
        self.publish(
            "curate",
            files=[],
            initial=True,
            seconds=round(time.perf_counter() - t0, 3),
            pending_words=self.pending,
            problems=_problems(manifest),
        )

    def manuscript_changed(self, batch: Batch) -> None:
        t0 = time.perf_counter()
        with self._lock:
            manifest = self.ws.curate(self.tokenizer())
        seconds = time.perf_counter() - t0
        self.curate_seconds.append(seconds)
        self.refresh_pending()
        self.publish(
            "curate",
            files=[self._rel(p) for p in batch.changed],
            deleted=[self._rel(p) for p in batch.deleted],
            rescan=batch.rescan,
            seconds=round(seconds, 3),
            pending_words=self.pending,
            recomputed=list(getattr(manifest, "recomputed", [])),
            problems=_problems(manifest),
        )

    def refresh_pending(self) -> int:
        rows = read_rows(self.current_dir / "train.jsonl")
        live = self.registry.live()
        seen = seen_rows(self.ws.paths.runs / live.run_id) if live is not None and live.run_id else None
        with self._lock:
            self.pending = pending_words(rows, seen)
            path = self.current_dir / "train.jsonl"
            self._fingerprint = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else ""
        return self.pending

    def state(self) -> tuple[int, str]:
        """(pending words, dataset fingerprint): what the scheduler's policy reads."""
        with self._lock:
            return self.pending, self._fingerprint

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.ws.root).as_posix()
        except ValueError:
            return str(path)

    # -- lore ------------------------------------------------------------------------------------------------------
    def _lore_ready(self) -> None:
        if self.ws.lore_index() is not None:
            self.publish("lore.indexed", files=[], entries=self.lore_size(), initial=True)

    def lore_changed(self, batch: Batch) -> None:
        lore = self.ws.lore_index()
        if lore is None:
            return
        t0 = time.perf_counter()
        for path in batch.changed:
            lore.update_file(path)
        for path in batch.deleted:
            lore.remove_file(path)
        self.publish(
            "lore.indexed",
            files=[self._rel(p) for p in batch.changed],
            deleted=[self._rel(p) for p in batch.deleted],
            entries=self.lore_size(),
            seconds=round(time.perf_counter() - t0, 3),
        )

    def lore_size(self) -> int | None:
        lore = self.ws.open_lore_index()  # never opens the index just to count it
        if lore is None:
            return None
        try:
            return len(lore.names())
        except Exception as err:  # the count is informative only; say why it is missing
            log.warning("cannot count lore entries: %s", err)
            return None

    # -- training child spec ---------------------------------------------------------------------------------------
    def _warm_rate(self, preset: str, overrides: dict) -> dict:
        """A warm start continues the live adapter on new passages plus a replay share: at the preset's full rate
        it overshoots (held-out perplexity 3% worse than live, rejected, in benchmarks/turnaround.py --defaults)."""
        if "learning_rate" in overrides:
            return overrides
        from penwright.trainer.presets import load_training_settings

        rate = load_training_settings(preset, overrides, self.ws.root).learning_rate
        return {**overrides, "learning_rate": rate * WARM_LR_SCALE}

    def child_spec(self, run_dir: Path, data_dir: Path, job, live, resume: bool) -> dict:
        base = self.base_model()
        warm = self.settings.retrain.warm_start and live is not None and live.base_model == base
        preset = job.preset or self.settings.training.preset
        overrides = {**self.settings.training.overrides, **(job.info.get("overrides") or {})}
        return {
            "job_id": job.id,
            "run_id": run_dir.name,
            "run_dir": str(run_dir),
            "dataset_dir": str(data_dir),
            "base_model": base,
            "model": self.settings.model.model_dump(),
            "preset": preset,
            "overrides": self._warm_rate(preset, overrides) if warm else overrides,
            "project_root": str(self.ws.root),
            "resume": resume,
            "init_adapter": str(live.path) if warm else None,
            "reference_adapter": str(live.path) if live is not None and live.base_model == base else None,
            "reference_name": live.model_id if live is not None else "base",
            "dataset_hash": self._fingerprint,
            "gate_samples": self.settings.retrain.gate_samples,
        }


def _problems(manifest) -> list[str]:
    probs = getattr(manifest, "problems", None) or []
    return [f"{p.get('path')}: {p.get('problem')}" if isinstance(p, dict) else str(p) for p in probs][:20]
