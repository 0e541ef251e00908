"""Arguments and helpers shared by the verb modules."""

from __future__ import annotations

import argparse

from penwright.project import Project, load_project


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        "-p",
        default=None,
        help="the writing project's folder or its penwright.yaml (default: search upward from here)",
    )


def project_from(args: argparse.Namespace) -> Project:
    return load_project(args.project)
