"""`penwright serve`: the daemon's HTTP side: the app with the daemon's routers, the socket, uvicorn."""

from __future__ import annotations

import logging
import signal

from penwright.project import Project
from penwright.server.daemon.core import Daemon
from penwright.workspace import Workspace

log = logging.getLogger(__name__)


def build_app(daemon: Daemon, bound_host: str | None = None):
    """The serving app (server/app.py create_app) with the daemon's routers."""
    from penwright.server.app import create_app
    from penwright.server.routers import dashboard, events, train

    app = create_app(daemon.services, routers=(train.router, events.router, dashboard.router), bound_host=bound_host)
    app.state.daemon = daemon
    return app


def make_services(daemon: Daemon):
    """The serving side (server/context.py Services) from the daemon's workspace, with the daemon's events; the
    engine loads the same base the trainer resolves, and the lore index is the one the keeper updates."""
    from penwright.server.context import build_services

    services = build_services(daemon.workspace, events=daemon.events)
    if daemon.settings.retrain.pause_while_typing:
        services.on_request.append(daemon.runner.author_typing)
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
    """`penwright serve`: lock, compose, bind, start the background parts, serve until interrupted."""
    import uvicorn

    from penwright.project import check_startup
    from penwright.server.app import check_bind

    host = project.settings.server.host if host is None else host
    port = project.settings.server.port if port is None else port
    check_bind(project.settings.server, host)  # before anything is loaded: `--host 0.0.0.0` needs a key too
    check_startup(project)  # missing folders, an unknown preset: said now, not at the first job
    daemon = Daemon(Workspace(project)).open()
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
