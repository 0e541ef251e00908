"""`penwright adapters list|show|promote|rollback|delete`: the adapter registry of a project."""

from __future__ import annotations

import argparse
import json

from penwright.cli.common import add_project_argument, project_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every version with its status and metrics")
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one version in full, with its history")
    show.add_argument("version", type=_version)
    promote = sub.add_parser("promote", help="serve this version (the live one is retired)")
    promote.add_argument("version", type=_version)
    promote.add_argument("--reason", default=None)
    rollback = sub.add_parser("rollback", help="serve an earlier version again (default: the previously live one)")
    rollback.add_argument("version", type=_version, nargs="?", default=None)
    rollback.add_argument(
        "--checkpoint", default=None, help="instead: a run checkpoint folder, e.g. runs/<id>/checkpoints/step-40"
    )
    rollback.add_argument("--reason", default=None)
    delete = sub.add_parser("delete", help="remove a version's files and record (not the live one)")
    delete.add_argument("version", type=_version)


def _version(text: str) -> int:
    digits = text.lower().split("@")[-1].lstrip("v")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a version (use 7, v7 or penwright@v7)")
    return int(digits)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from penwright.trainer.registry import Registry

    project = project_from(args)
    paths = project.paths.ensure()
    reg = Registry(paths.database, paths.adapters)
    if args.action == "list":
        return _list(reg, args.json)
    if args.action == "show":
        v = reg.get(args.version)
        print(json.dumps({**v.to_dict(), "history": reg.history(v.version)}, indent=2))
        return 0
    if args.action == "promote":
        v = reg.promote(args.version, args.reason)
        print(f"v{v.version} is live ({v.model_id})")
    elif args.action == "rollback":
        if args.checkpoint:
            ckpt = Path(args.checkpoint)
            ckpt = ckpt / "adapter" if (ckpt / "adapter").is_dir() else ckpt
            v = reg.rollback_to_checkpoint(
                ckpt, base_model=project.settings.model.base, run_id=ckpt.parts[-3] if len(ckpt.parts) >= 3 else None
            )
        else:
            v = reg.rollback(args.version, reason=args.reason)
        print(f"rolled back: v{v.version} is live ({v.model_id})")
    elif args.action == "delete":
        reg.delete(args.version)
        print(f"deleted v{args.version}")
    return 0


def _list(reg, as_json: bool) -> int:
    versions = reg.list()
    if as_json:
        print(json.dumps([v.to_dict() for v in versions], indent=2))
        return 0
    if not versions:
        print("no adapters yet: `penwright train` makes one")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("version", "name", "status", "eval loss", "run", "created", "reason")
    for v in versions:
        loss = v.metrics.get("eval_loss")
        style = "bold green" if v.status == "live" else ("red" if v.status == "rejected" else None)
        table.add_row(
            f"v{v.version}",
            v.name,
            v.status,
            "-" if loss is None else f"{loss:.4f}",
            v.run_id or "-",
            v.created_at,
            v.reason or "",
            style=style,
        )
    Console().print(table)
    return 0
