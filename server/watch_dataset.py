"""What the daemon does with file changes: re-curate manuscript files, re-index lore files, count pending words.

Bridges the watcher to the curation (`penwright.trainer.curate`) and lore
(`penwright.rag`) components, and prepares what a training child needs (its
spec). The training set lives in `.penwright/datasets/current/`; the pending
count is "new or changed words since the live adapter's dataset" (rows the
live adapter's run has not seen; see scheduler.pending_words).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from penwright.server.scheduler import pending_words, read_rows, seen_rows
from penwright.server.watch import Batch

log = logging.getLogger(__name__)


class DatasetKeeper:
    def __init__(self, daemon):
        self.d = daemon
        self.project = daemon.project
        self.settings = daemon.settings
        self.publish = daemon.events.publish
        self.current_dir = daemon.paths.datasets / "current"
        self.pending = 0
        self._fingerprint = ""
        self._lock = threading.RLock()
        self._base_model: str | None = None
        self._tokenizer = None
        self.lore = None  # LoreIndex once opened
        self.curate_seconds: list[float] = []

    # -- base model ------------------------------------------------------------------------------------------------
    def base_model(self) -> str:
        """The resolved base model, fixed for the daemon's life.

        builtin:tiny is built from the manuscript, so its fingerprint changes as the author writes; the live
        adapter's own base is kept so adapters keep fitting it.
        """
        with self._lock:
            if self._base_model is None:
                self._base_model = self._resolve_base()
            return self._base_model

    def _resolve_base(self) -> str:
        from penwright.trainer.models import BUILTIN_TINY, resolve_model

        spec = self.settings.model.base
        if spec == BUILTIN_TINY:
            for v in reversed(self.d.registry.list()):
                if v.base_model and (Path(v.base_model) / "config.json").is_file():
                    return v.base_model
            built = sorted(self.d.paths.models.glob("tiny-*/config.json"), key=lambda p: p.stat().st_mtime)
            if built:
                return str(built[-1].parent)
        return resolve_model(spec, self.d.paths.models, texts=self._manuscript_texts)

    def _manuscript_texts(self) -> list[str]:
        from penwright.server.context import manuscript_texts

        return manuscript_texts(self.project)

    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.base_model())
            return self._tokenizer

    # -- curation ----------------------------------------------------------------------------------------------
    def _curate(self, changed: list[Path] | None):
        """Re-curate (incrementally: unchanged files come from curation's per-file cache)."""
        from penwright.trainer.curate import curate

        m = self.settings.manuscript
        return curate(
            self.project.manuscript_dirs,
            m.include,
            m.exclude,
            self.project.ignore_file,
            self.settings.curation,
            self.tokenizer(),
            self.current_dir,
            root=self.project.root,
            context_limit=self.settings.model.max_context_tokens,
        )

    def initial_sync(self) -> None:
        self.base_model()
        self._open_lore()
        t0 = time.perf_counter()
        with self._lock:
            manifest = self._curate(None)
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
            manifest = self._curate(batch.changed)
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
        live = self.d.registry.live()
        seen = seen_rows(self.d.paths.runs / live.run_id) if live is not None and live.run_id else None
        with self._lock:
            self.pending = pending_words(rows, seen) if seen is not None else sum_words(rows)
            path = self.current_dir / "train.jsonl"
            self._fingerprint = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else ""
        return self.pending

    def state(self) -> tuple[int, str]:
        with self._lock:
            return self.pending, self._fingerprint

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.project.root).as_posix()
        except ValueError:
            return str(path)

    # -- lore ------------------------------------------------------------------------------------------------------
    def _open_lore(self) -> None:
        if self.lore is not None or not self.settings.lore.enabled or not self.project.lore_dir.is_dir():
            return
        try:
            from penwright.rag.index import LoreIndex

            self.lore = LoreIndex(self.project.lore_dir, self.d.paths.lore_index, self.settings.lore)
            self.lore.sync()
            if self.d.services is not None:
                self.d.services.lore = self.lore
            self.publish("lore.indexed", files=[], entries=self.lore_size(), initial=True)
        except ImportError:
            log.warning("lore index not available")

    def lore_changed(self, batch: Batch) -> None:
        if self.lore is None:
            self._open_lore()
            if self.lore is None:
                return
        t0 = time.perf_counter()
        for path in batch.changed:
            self.lore.update_file(path)
        for path in batch.deleted:
            self.lore.remove_file(path)
        self.publish(
            "lore.indexed",
            files=[self._rel(p) for p in batch.changed],
            deleted=[self._rel(p) for p in batch.deleted],
            entries=self.lore_size(),
            seconds=round(time.perf_counter() - t0, 3),
        )

    def lore_size(self) -> int | None:
        if self.lore is None:
            return None
        try:
            return len(self.lore.names())
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

        rate = load_training_settings(preset, overrides, self.project.root).learning_rate
        return {**overrides, "learning_rate": rate * WARM_LR_SCALE}

    def child_spec(self, run_dir: Path, data_dir: Path, job, live, resume: bool) -> dict:
        warm = self.settings.retrain.warm_start and live is not None and live.base_model == self.base_model()
        preset = job.preset or self.settings.training.preset
        overrides = {**self.settings.training.overrides, **(job.info.get("overrides") or {})}
        return {
            "job_id": job.id,
            "run_id": run_dir.name,
            "run_dir": str(run_dir),
            "dataset_dir": str(data_dir),
            "base_model": self.base_model(),
            "model": self.settings.model.model_dump(),
            "preset": preset,
            "overrides": self._warm_rate(preset, overrides) if warm else overrides,
            "project_root": str(self.project.root),
            "resume": resume,
            "init_adapter": str(live.path) if warm else None,
            "reference_adapter": str(live.path) if live is not None and live.base_model == self.base_model() else None,
            "reference_name": live.model_id if live is not None else "base",
            "dataset_hash": self._fingerprint,
            "gate_samples": self.settings.retrain.gate_samples,
        }


WARM_LR_SCALE = 0.25  # a warm retrain refines the live adapter on a small set: a quarter of the preset's rate


def sum_words(rows: list[dict]) -> int:
    return pending_words(rows, None)


def _problems(manifest) -> list[str]:
    probs = getattr(manifest, "problems", None) or []
    return [f"{p.get('path')}: {p.get('problem')}" if isinstance(p, dict) else str(p) for p in probs][:20]
