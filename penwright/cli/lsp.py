"""`penwright lsp`: the language server, over stdio (default) or TCP.

Starts fast: nothing heavy is imported; the daemon does the model work.
"""

from __future__ import annotations

import argparse
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    parser.add_argument("--tcp", action="store_true", help="listen on --host/--port instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address (with --tcp)")
    parser.add_argument("--port", type=int, default=2087, help="TCP port (with --tcp)")
    parser.add_argument(
        "--project", "-p", default=None, help="the writing project (default: from the editor's workspace)"
    )


def run(args: argparse.Namespace) -> int:
    from penwright.server.lsp.server import build_server

    # stdout is the protocol channel: logs go to stderr only.
    logging.getLogger().handlers.clear()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("penwright-lsp %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    for noisy in ("pygls", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ls = build_server()
    if args.project:
        ls.settings.project = args.project
    if args.tcp:
        ls.start_tcp(args.host, args.port)
    else:
        ls.start_io()
    return 0
