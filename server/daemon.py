"""The daemon: one per writing project. It composes settings, the state lock, the job queue, the
adapter registry, the scheduler, the watcher, the events bus, the gate and the HTTP app.

Startup order matters: the lock is taken before anything heavy is loaded, so a
second `penwright serve` on the same project fails at once with a clear message.
`.penwright/daemon.json` tells clients (CLI, language server) where it listens.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from penwright.errors import DaemonLockedError, PenwrightError
from penwright.project import Project
from penwright.server.daemon_info import INFO_FILE, LOCK_FILE, read_daemon_info  # noqa: F401 (re-exported)
from penwright.server.events import EventBus
from penwright.server.jobs import Job, JobQueue
from penwright.server.scheduler import Scheduler
from penwright.server.watch import Batch, Watcher, WatchRoot

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

    def __init__(self, project: Project):
        self.project = project
        self.paths = project.paths
        self.settings = project.settings
        self.events = EventBus()
        self.lock = DaemonLock(self.paths.state)
        self.started_at = time.time()
        self.jobs: JobQueue | None = None
        self.registry = None
        self.scheduler: Scheduler | None = None
        self.watcher: Watcher | None = None
        self.services = None  # the serving side (engine, lore), from server/app.py
        self.trainer = None  # TrainingLoop, set in open()
        self.dataset = None  # DatasetKeeper, set in open()
        self.info: dict = {}
        self._closed = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def open(self) -> Daemon:
        """Take the lock and open the state (cheap: no model is loaded here)."""
        self.lock.acquire(self.project.root)
        from penwright.server.runner_jobs import TrainingLoop
        from penwright.server.watch_dataset import DatasetKeeper
        from penwright.trainer.registry import Registry

        self.paths.ensure()
        self.jobs = JobQueue(self.paths.database)
        self.registry = Registry(self.paths.database, self.paths.adapters)
        self.dataset = DatasetKeeper(self)
        self.trainer = TrainingLoop(self)
        self.trainer.recover()
        self.scheduler = Scheduler(
            self.settings.retrain,
            self.jobs,
            self.trainer.start,
            self.trainer.busy,
            self.dataset.state,
            self.events.publish,
        )
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
                self.dataset.initial_sync()
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
            self.events.publish("daemon.ready", pending_words=self.dataset.pending)

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
            self.dataset.lore_changed(batch)
        else:
            self.dataset.manuscript_changed(batch)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for part in (self.watcher, self.scheduler):
            if part is not None:
                part.stop()
        if self.trainer is not None:
            self.trainer.shutdown()
        if self.services is not None and hasattr(self.services, "close"):
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
        return self.trainer.cancel(job_id)

    def promote(self, version: int) -> dict:
        return self.trainer.gate.promote(version, reason="promoted by hand").to_dict()

    def rollback(self, version: int) -> dict:
        return self.trainer.gate.promote(version, reason="rolled back by hand", rolled_back=True).to_dict()

    def status(self) -> dict:
        live = self.registry.live() if self.registry else None
        return {
            "project": str(self.project.root),
            "title": self.settings.title,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "live": live.to_dict() if live else None,
            "pending_words": self.dataset.pending if self.dataset else 0,
            "min_new_words": self.settings.retrain.min_new_words,
            "waiting_for": self.scheduler.why_not() if self.scheduler else None,
            "running_job": self.trainer.running_job_id() if self.trainer else None,
            "lore_entries": self.dataset.lore_size() if self.dataset else None,
            "last_event_id": self.events.last_id,
        }

    # -- serving side ----------------------------------------------------------------------------------------------
    def swap_live(self, adapter) -> None:
        """Hot-swap what the registry now calls live into the engine (or publish it upstream in proxy mode)."""
        if self.services is not None:
            self.services.sync_live()


def build_app(daemon: Daemon, bound_host: str | None = None):
    """The serving app (server/app.py create_app) with the daemon's routers."""
    from penwright.server.app import create_app
    from penwright.server.routers import dashboard, events, train

    app = create_app(daemon.services, routers=(train.router, events.router, dashboard.router), bound_host=bound_host)
    app.state.daemon = daemon
    return app


def make_services(daemon: Daemon):
    """The serving side (server/context.py Services) on the daemon's own base model, registry, lore and events.

    The engine gets the SAME resolved base the trainer uses (builtin:tiny is built from the manuscript, so
    resolving it twice could give two different models)."""
    from penwright.server.context import build_services

    project = daemon.project
    services = build_services(project, start_engine=False)
    services.registry = daemon.registry
    services.events = daemon.events
    services.extra["daemon"] = daemon
    if project.settings.upstream is None:
        from penwright.server.engine import Engine, make_backend

        m = project.settings.model
        backend = make_backend(daemon.dataset.base_model(), m.backend, m.quantization, m.dtype, m.max_context_tokens)
        services.engine = Engine(backend, max_batch=project.settings.server.max_batch).start()
    services.sync_live()
    if project.settings.retrain.pause_while_typing:
        services.on_request.append(lambda: daemon.trainer is not None and daemon.trainer.author_typing())
    daemon.dataset.lore = services.lore
    return services


class _Server:
    """uvicorn.Server that tells event streams to end as soon as shutdown starts (else it waits for them)."""

    def __new__(cls, config, daemon: Daemon):
        import uvicorn

        from penwright.server.events import STOPPING

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                daemon.events.publish(STOPPING)
                super().handle_exit(sig, frame)

        return Server(config)


def bind_socket(host: str, port: int):
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        from penwright.errors import ServeError

        raise ServeError(
            f"Cannot listen on {host}:{port}: {err.strerror}.",
            "Another program uses that port: set server.port in penwright.yaml or pass --port.",
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(project: Project, host: str | None = None, port: int | None = None) -> int:
    """`penwright serve`: lock, open state, bind, start the background parts, serve until interrupted."""
    import uvicorn

    from penwright.project import check_startup
    from penwright.server.app import check_bind

    host = project.settings.server.host if host is None else host
    port = project.settings.server.port if port is None else port
    check_bind(project.settings.server, host)  # before anything is loaded: `--host 0.0.0.0` needs a key too
    check_startup(project)  # missing folders, an unknown preset: said now, not at the first job
    daemon = Daemon(project).open()
    try:
        daemon.services = make_services(daemon)
        app = build_app(daemon, bound_host=host)
        sock = bind_socket(host, port)
        actual = sock.getsockname()[1]
        daemon.write_info(host, actual)
        log.info("Penwright daemon for %s on http://%s:%s (dashboard at /)", project.root, host, actual)
        daemon.start_background()
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with a no-op handler in place that
        # lands here instead of killing the process, so `close()` below still stops training and unlocks.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        _Server(config, daemon).run(sockets=[sock])
    finally:
        daemon.close()
    return 0
