"""The daemon: one per writing project. It composes the background pipeline and is what the HTTP routers call.

    watcher -> dataset keeper -> scheduler (policy) -> job runner -> training child -> gate -> make live

Each part gets its collaborators in `__init__` (none holds the daemon). Startup order matters: the lock is taken
before anything heavy is loaded, so a second `penwright serve` on the same project fails at once with a clear
message. `.penwright/daemon.json` tells clients (CLI, language server) where it listens.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from penwright.errors import DaemonLockedError, PenwrightError
from penwright.server.daemon.gate import Gate
from penwright.server.daemon.job_runner import JobRunner
from penwright.server.daemon.jobs import Job, JobQueue
from penwright.server.daemon.keeper import DatasetKeeper
from penwright.server.daemon.scheduler import Scheduler
from penwright.server.daemon.watcher import Batch, Watcher, WatchRoot
from penwright.server.daemon_info import INFO_FILE, LOCK_FILE
from penwright.server.events import EventBus
from penwright.workspace import Workspace

log = logging.getLogger(__name__)


class DaemonLock:
    """`flock` on `.penwright/daemon.lock`: released by the kernel when the process dies, even by kill -9."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / LOCK_FILE
        self._fh = None

    def acquire(self, project_root: Path) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            raise DaemonLockedError(project_root, int(text) if text.isdigit() else None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Daemon:
    """Everything the daemon runs. Thread-safe entry points for the HTTP routers."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.project = workspace.project
        self.paths = workspace.paths
        self.settings = workspace.settings
        self.events = EventBus()
        self.lock = DaemonLock(self.paths.state)
        self.started_at = time.time()
        self.jobs: JobQueue | None = None
        self.registry = None
        self.keeper: DatasetKeeper | None = None
        self.gate: Gate | None = None
        self.runner: JobRunner | None = None
        self.scheduler: Scheduler | None = None
        self.watcher: Watcher | None = None
        self.services = None  # the serving side (engine or upstream, lore), from serve.make_services
        self.info: dict = {}
        self._closed = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def open(self) -> Daemon:
        """Take the lock and compose the pipeline (cheap: no model is loaded here)."""
        self.lock.acquire(self.project.root)
        self.paths.ensure()
        publish = self.events.publish
        self.jobs = JobQueue(self.paths.database)
        self.registry = self.workspace.registry
        self.keeper = DatasetKeeper(self.workspace, self.registry, publish)
        self.gate = Gate(self.registry, publish, self.make_live, self.settings.retrain.gate_margin)
        self.runner = JobRunner(
            self.jobs,
            self.registry,
            self.keeper,
            self.gate,
            self.paths.runs,
            self.settings.retrain,
            publish,
            share_cpu=self._share_cpu,
        )
        self.runner.recover()
        self.scheduler = Scheduler(
            self.settings.retrain, self.jobs, self.runner.start, self.runner.busy, self.keeper.state, publish
        )
        self.runner.on_idle = self.scheduler.wake
        return self

    def write_info(self, host: str, port: int) -> None:
        self.info = {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "url": f"http://{host}:{port}",
            "project": str(self.project.root),
            "started_at": self.started_at,
        }
        target = self.paths.state / INFO_FILE
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.info, indent=2))
        os.replace(tmp, target)

    def start_background(self) -> None:
        """Initial curation, then the watcher and the scheduler. Runs on a thread so HTTP answers at once."""

        def run() -> None:
            try:
                self.keeper.initial_sync()
            except PenwrightError as err:
                self.events.publish("error", message=str(err))
            except Exception as err:  # keep serving; say what broke
                log.exception("initial curation failed")
                self.events.publish("error", message=f"initial curation failed: {err}")
            if self._closed.is_set():
                return
            if self.settings.watch.enabled:
                self.watcher = self._make_watcher().start()
            self.scheduler.start()
            self.events.publish("daemon.ready", pending_words=self.keeper.pending)

        threading.Thread(target=run, name="penwright-startup", daemon=True).start()

    def _make_watcher(self) -> Watcher:
        m = self.settings.manuscript
        roots = [WatchRoot("manuscript", d, m.include, m.exclude) for d in self.project.manuscript_dirs]
        roots.append(WatchRoot("lore", self.project.lore_dir, ["**/*"], []))
        return Watcher(
            roots,
            self._on_batch,
            on_error=lambda msg: self.events.publish("error", message=msg),
            quiet_seconds=self.settings.watch.quiet_seconds,
            ignore_file=self.project.ignore_file,
            project_root=self.project.root,
        )

    def _on_batch(self, batch: Batch) -> None:
        self.scheduler.note_activity()
        if batch.kind == "lore":
            self.keeper.lore_changed(batch)
        else:
            self.keeper.manuscript_changed(batch)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for part in (self.watcher, self.scheduler):
            if part is not None:
                part.stop()
        if self.runner is not None:
            self.runner.shutdown()
        if self.services is not None:
            try:
                self.services.close()
            except Exception:
                log.exception("closing the serving side failed")
        try:
            (self.paths.state / INFO_FILE).unlink()
        except FileNotFoundError:
            pass
        self.lock.release()

    # -- operations (HTTP routers call these) ----------------------------------------------------------------------
    def retrain_now(self, preset: str | None = None, overrides: dict | None = None) -> Job:
        """ "Retrain now": skips the wait; validates the preset and overrides before queueing."""
        from penwright.trainer.presets import load_training_settings
        from penwright.trainer.settings import TrainingChoice

        choice = TrainingChoice(
            preset=preset or self.settings.training.preset, overrides=self.settings.training.overrides
        )
        load_training_settings(choice, overrides or {}, self.project.root)
        info = {"overrides": overrides} if overrides else {}
        for job in self.jobs.with_status("queued"):  # asking again while one waits does not queue another
            if job.trigger == "manual" and job.preset == preset and job.info.get("overrides") == info.get("overrides"):
                return job
        return self.scheduler.request("manual", preset, info=info or None)

    def cancel(self, job_id: int) -> Job:
        return self.runner.cancel(job_id)

    def promote(self, version: int) -> dict:
        return self.gate.promote(version, reason="promoted by hand").to_dict()

    def rollback(self, version: int) -> dict:
        return self.gate.promote(version, reason="rolled back by hand", rolled_back=True).to_dict()

    def running_job_id(self) -> int | None:
        return self.runner.running_job_id() if self.runner else None

    def status(self) -> dict:
        live = self.registry.live() if self.registry else None
        return {
            "project": str(self.project.root),
            "title": self.settings.title,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "live": live.to_dict() if live else None,
            "pending_words": self.keeper.pending if self.keeper else 0,
            "min_new_words": self.settings.retrain.min_new_words,
            "waiting_for": self.scheduler.why_not() if self.scheduler else None,
            "running_job": self.running_job_id(),
            "lore_entries": self.keeper.lore_size() if self.keeper else None,
            "last_event_id": self.events.last_id,
        }

    # -- the serving side ------------------------------------------------------------------------------------------
    def make_live(self, adapter) -> None:
        """The gate promoted (or a person rolled back to) `adapter`: serve it now (hot-swap into the engine, or
        publish it upstream in proxy mode) and say how long the swap paused serving."""
        t0 = time.perf_counter()
        if self.services is not None:
            self.services.sync_live()
        self.events.publish("adapter.swapped", version=adapter.version, seconds=round(time.perf_counter() - t0, 4))

    def _share_cpu(self, child_threads: int) -> None:
        engine = self.services.engine if self.services is not None else None
        if engine is not None and engine.running:
            engine.share_cpu(child_threads)
