"""`penwright continue-config`: print or write the Continue.dev config for this project (server/continue_config.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from penwright.cli.common import add_project_argument
from penwright.errors import PenwrightError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument(
        "--write",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="write the config to PATH (default: .continue/assistants/penwright.yaml in the project, which "
        "Continue loads as a local assistant) instead of printing it",
    )
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")


def run(args: argparse.Namespace) -> int:
    from penwright.cli.common import project_from
    from penwright.server.continue_config import WORKSPACE_FILE, render

    project = project_from(args)
    text = render(project.root)
    if args.write is None:
        sys.stdout.write(text)
        return 0
    target = Path(args.write) if args.write else project.root / WORKSPACE_FILE
    if target.exists() and not args.force:
        raise PenwrightError(f"{target} exists", "pass --force to overwrite it, or --write another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0
