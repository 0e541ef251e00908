"""`penwright serve`: the daemon for one writing project (HTTP API, watcher, background training, dashboard)."""

from __future__ import annotations

import argparse
import logging

from penwright.cli.common import add_project_argument, project_from

log = logging.getLogger("penwright.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument("--host", default=None, help="bind address (default: server.host in penwright.yaml)")
    parser.add_argument("--port", type=int, default=None, help="port (default: server.port; 0 picks a free one)")


def run(args: argparse.Namespace) -> int:
    from penwright.server.daemon import serve

    project = project_from(args)
    return serve(project, host=args.host, port=args.port)
