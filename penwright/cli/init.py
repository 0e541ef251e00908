"""`penwright init`: scaffold a writing project (settings with comments, manuscript and lore folders)."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from penwright.errors import PenwrightError
from penwright.project import SETTINGS_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default=".", help="project folder (created if missing)")
    parser.add_argument("--title", default=None, help="the book's title")
    parser.add_argument("--model", default=None, help="base model (default: builtin:tiny, a demo model)")


def run(args: argparse.Namespace) -> int:
    from penwright.settings_doc import commented_settings

    root = Path(args.folder).resolve()
    settings_file = root / SETTINGS_FILE
    if settings_file.exists():
        raise PenwrightError(f"{settings_file} already exists.", "Edit it, or init another folder.")
    overrides: dict = {}
    if args.title:
        overrides["title"] = args.title
    if args.model:
        overrides["model"] = {"base": args.model}
    root.mkdir(parents=True, exist_ok=True)
    (root / "manuscript").mkdir(exist_ok=True)
    lore = root / "lore"
    lore.mkdir(exist_ok=True)
    example = lore / "example-character.md"
    if not any(lore.iterdir()):
        example.write_text(resources.files("penwright.templates").joinpath("example-character.md").read_text())
    settings_file.write_text(commented_settings(overrides))
    print(f"Created {settings_file}")
    print(f"Put your chapters in {root / 'manuscript'} and your lore in {lore}.")
    print("Next: `penwright doctor`, then `penwright serve`.")
    return 0
