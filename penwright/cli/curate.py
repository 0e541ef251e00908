"""`penwright curate`: turn the manuscript into a training set under .penwright/datasets/current/.

Only files that changed since the last run are re-chunked. Bad files are listed
(file and line) and skipped; the rest is still curated. Nothing the author wrote
is modified.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from penwright.cli.common import add_project_argument, project_from

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON instead of the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs and CI)")


def dataset_dir(project) -> Path:
    return project.paths.datasets / "current"


def run_curation(project, dry_run: bool, progress_bars: bool):
    """The workspace's curation (the daemon curates the same way), with rich progress bars."""
    from penwright.trainer.curate import ModelTokenizer
    from penwright.workspace import Workspace

    ws = Workspace(project)
    # a dry run builds nothing: builtin:tiny's tokenizer is trained in memory on the texts read
    tokenizer = ModelTokenizer(project.settings.model.base, project.paths.models, build=False) if dry_run else None
    with _progress(progress_bars) as progress:
        return ws.curate(tokenizer, progress=progress, dry_run=dry_run)


class _progress:
    """A rich progress bar per stage, as a `progress(stage, done, total)` callback."""

    LABELS = {"read": "reading and cleaning", "chunk": "chunking and pairing"}

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
            )
            self.bar.__enter__()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(self.LABELS.get(stage, stage), total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def print_report(manifest, where: Path | None = None) -> None:
    """The short report: counts, pairs, token budgets, problems."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    t, tok = manifest.totals, manifest.tokens
    head = "Would curate" if manifest.dry_run else "Curated"
    console.print(
        f"[bold]{head}[/] {t.get('files', 0)} file(s), {t.get('words', 0):,} words -> "
        f"{t.get('chunks', 0):,} chunks -> {t.get('rows', 0):,} rows "
        f"(train {t.get('train', 0):,}, valid {t.get('valid', 0):,}) in {manifest.wall_seconds:.1f}s"
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("pairs")
    table.add_column("rows", justify="right")
    for kind, n in manifest.pairs.items():
        table.add_row(kind, f"{n:,}")
    console.print(table)
    sample, chunk = tok.get("sample", {}), tok.get("chunk", {})
    console.print(
        f"tokens per chunk: median {chunk.get('median', 0)}, p75 {chunk.get('p75', 0)}, max {chunk.get('max', 0)}"
    )
    console.print(
        f"tokens per sample: median {sample.get('median', 0)}, p75 {sample.get('p75', 0)}, max {sample.get('max', 0)}; "
        f"{sample.get('share_over_limit', 0):.1%} over the {sample.get('limit', 0)}-token context"
    )
    extras = [f"{t.get('duplicate_chunks', 0)} duplicate passages", f"{t.get('refusals_dropped', 0)} refusals dropped"]
    if t.get("user_rows"):
        extras.append(f"{t['user_rows']} rows from your datasets")
    if not manifest.dry_run:
        extras.append(f"{t.get('recomputed_files', 0)} of {t.get('files', 0)} file(s) re-chunked")
    console.print(", ".join(extras))
    for p in manifest.problems:
        where_ = f"{p['path']}:{p['line']}" if p.get("line") else p["path"]
        console.print(f"[yellow]skipped[/] {where_}: {p['problem']}\n  -> {p['hint']}")
    if where is not None and not manifest.dry_run:
        console.print(f"written to {where}")


def run(args: argparse.Namespace) -> int:
    project = project_from(args)
    manifest = run_curation(project, dry_run=False, progress_bars=not args.no_progress and not args.json)
    if args.json:
        import json

        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(manifest, dataset_dir(project).relative_to(project.root))
    return 0
