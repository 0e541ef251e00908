"""`penwright dataset`: the current training set's figures; `--dry-run` counts what `curate` would make."""

from __future__ import annotations

import argparse
import json

from penwright.cli.common import add_project_argument, project_from
from penwright.cli.curate import dataset_dir, print_report, run_curation
from penwright.errors import DatasetError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="count files, words, chunks and rows without writing anything"
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args: argparse.Namespace) -> int:
    from penwright.trainer.curate import Manifest

    project = project_from(args)
    if args.dry_run:
        manifest = run_curation(project, dry_run=True, progress_bars=not args.json)
    else:
        path = dataset_dir(project) / "manifest.json"
        manifest = Manifest.load_or_none(path)
        if manifest is None:
            raise DatasetError(
                f"No training set yet ({path.relative_to(project.root)} is missing).",
                "Run `penwright curate` to make one, or `penwright dataset --dry-run` to see what it would hold.",
            )
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(manifest, None if args.dry_run else dataset_dir(project).relative_to(project.root))
    return 0
