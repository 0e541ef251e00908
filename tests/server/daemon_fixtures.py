"""The daemon's whole HTTP app (serving + training routes + dashboard) on a real uvicorn, without its background parts.

`Daemon(Workspace(project)).open()` takes the lock and opens the job queue and registry (no model); the serving
side is the session's tiny engine. Nothing trains: "retrain now" only queues (the scheduler thread is not started).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pwtest import copy_example
from serving_fixtures import LiveServer, tiny_engine


@contextlib.contextmanager
def daemon_app(tiny_model_dir: Path, folder: Path, engine=None, **server_settings):
    from penwright.project import load_project
    from penwright.server.context import Services
    from penwright.server.daemon import Daemon, build_app
    from penwright.workspace import Workspace

    project = load_project(copy_example(folder / "novel"))
    for key, value in server_settings.items():
        setattr(project.settings.server, key, value)
    daemon = Daemon(Workspace(project)).open()
    own_engine = engine is None
    engine = engine or tiny_engine(tiny_model_dir)
    daemon.services = Services(settings=project.settings.server, engine=engine, registry=daemon.registry)
    try:
        with LiveServer(build_app(daemon)) as server:
            yield daemon, server
    finally:
        if own_engine:
            engine.stop()
        daemon.services = None
        daemon.close()
