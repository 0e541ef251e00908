"""Plumbing shared by `penwright eval` and `penwright compare`: flags derived from EvalSettings, a text table."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from penwright.trainer.evaluate.report import ROWS
from penwright.trainer.evaluate.settings import EvalSettings

_SCALARS = (int, float)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per number in EvalSettings (defaults stay in the schema: None means "the schema's")."""
    group = parser.add_argument_group("evaluation settings")
    for name, field in EvalSettings.model_fields.items():
        if field.annotation in _SCALARS:
            group.add_argument(
                "--" + name.replace("_", "-"),
                type=field.annotation,
                default=None,
                help=f"{field.description or ''} (default {field.default})".strip(),
            )
    group.add_argument(
        "--ban",
        action="append",
        default=[],
        metavar="TEXT",
        help="a string generations must never contain (repeatable)",
    )
    group.add_argument("--device", default=None, help="cuda, cpu or mps (default: cuda when available)")
    group.add_argument("--out", default=None, help="folder for report.json and report.html")


def settings_from(args: argparse.Namespace) -> EvalSettings:
    given = {n: getattr(args, n) for n in EvalSettings.model_fields if getattr(args, n, None) is not None}
    if args.ban:
        given["banned"] = list(args.ban)
    return EvalSettings(**given)


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def text_table(report: dict) -> str:
    """The scores side by side, as plain text for the terminal."""
    sides = report["sides"]
    header = ["", *(s["label"] for s in sides)]
    rows = [header]
    for key, label, _ in ROWS:
        if any(key in s for s in sides):
            rows.append([label, *(_cell(s.get(key)) for s in sides)])
    rows.append(["Guards", *(("; ".join(s.get("guard_failures") or []) or "pass")[:60] for s in sides)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return "-" if v is None else str(v)


def read_texts(paths: list[str]) -> list[str]:
    from penwright.errors import InputFileError

    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputFileError(path, "no such file", "Pass text files of the author's prose (.txt or .md).")
        out.append(path.read_text(encoding="utf-8", errors="replace"))
    return out


def rows_texts(path: Path) -> list[dict]:
    """Rows of a JSONL split (validated by the trainer's reader)."""
    from penwright.trainer.data import read_rows

    return read_rows(Path(path))


def dump_summary(report: dict) -> str:
    return json.dumps({s["label"]: {k: s.get(k) for k, _, _ in ROWS} for s in report["sides"]}, indent=1)
