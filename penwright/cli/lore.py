"""`penwright lore index|search|check|select|import`: the lore index from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from penwright.cli.common import add_project_argument, project_from
from penwright.errors import LoreError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lore_command", metavar="ACTION", required=True)
    p = sub.add_parser("index", help="index the lore folder (only what changed), or --rebuild it")
    p.add_argument("--rebuild", action="store_true", help="drop the index and embed everything again")
    p = sub.add_parser("search", help="search the lore by name or meaning")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="how many sections (default 5)")
    p = sub.add_parser("check", help="report broken files, duplicate names, shared aliases, dead keys and index recall")
    p = sub.add_parser("select", help="show the lore that would be injected for a passage")
    p.add_argument("passage", help="text before the cursor ('-' reads standard input)")
    p.add_argument("--chapter", type=int, default=None)
    p.add_argument("--budget", type=int, default=None, help="token budget (default: lore.budget_tokens)")
    p = sub.add_parser("import", help="convert plain notes or a JSON lorebook into lore files")
    p.add_argument("source", help="a folder of notes, or a SillyTavern/Continue-style JSON lorebook")
    p.add_argument(
        "--output",
        "-o",
        default=None,
        help="where to write the entries (default: .penwright/lore-import/<name>/; "
        "name your lore folder here to import straight into it)",
    )
    for p in sub.choices.values():
        add_project_argument(p)
        p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _open(project):
    from penwright.rag.index import LoreIndex

    if not project.lore_dir.is_dir():
        raise LoreError(
            f"The lore folder {project.lore_dir} does not exist.",
            "Create it (one Markdown file per character or place), or set lore.folder in penwright.yaml.",
        )
    return LoreIndex(project.lore_dir, project.paths.lore_index, project.settings.lore)


def run(args: argparse.Namespace) -> int:
    project = project_from(args)
    if args.lore_command == "import":
        return _import(project, args)
    index = _open(project)
    try:
        return {"index": _index, "search": _search, "check": _check, "select": _select}[args.lore_command](index, args)
    finally:
        index.close()


def _print_problems(problems: list[str]) -> None:
    for p in problems:
        print(f"  ! {p}")


def _index(index, args) -> int:
    report = index.rebuild() if args.rebuild else index.sync()
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
        return 0
    n_entries, n_sections = len(index.entries), sum(len(e.sections) for e in index.entries)
    print(f"Lore: {n_entries} entries, {n_sections} sections in {index.lore_dir}")
    changes = [
        f"{len(report.added)} added",
        f"{len(report.updated)} changed",
        f"{len(report.removed)} removed",
        f"{len(report.renamed)} renamed",
        f"{report.embedded} sections embedded",
    ]
    print(f"  {', '.join(changes)} in {report.seconds:.1f} s")
    if report.rebuilt:
        print(f"  rebuilt: {report.rebuilt}")
    _print_problems(report.problems)
    return 0


def _search(index, args) -> int:
    hits = index.search(args.query, args.k)
    if args.json:
        print(json.dumps(hits, indent=1))
        return 0
    if not hits:
        print("No lore found.")
    for h in hits:
        heading = f" / {h['heading']}" if h["heading"] and h["heading"] != h["name"] else ""
        text = h["text"] if len(h["text"]) <= 240 else h["text"][:237] + "..."
        print(f"{h['score']:.2f}  {h['name']}{heading}  ({h['type']}, {h['file']})\n      {text}")
    return 0


def _check(index, args) -> int:
    index.sync()
    result = index.check()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{len(index.entries)} entries, {result['records']} indexed sections; "
            f"recall check: {len(result['unreachable'])} unreachable"
        )
        _print_problems(result["problems"])
        if not result["problems"] and not result["unreachable"]:
            print("No problems found.")
    return 1 if result["problems"] or result["unreachable"] else 0


def _select(index, args) -> int:
    import sys

    passage = sys.stdin.read() if args.passage == "-" else args.passage
    sel = index.select(passage, chapter=args.chapter, budget_tokens=args.budget)
    if args.json:
        print(json.dumps({"entries": sel.report(), "tokens": sel.tokens, "text": sel.text}, indent=1))
        return 0
    for e in sel.entries:
        print(f"{e.tokens:4d} tok  {e.reason:6s}  {e.id}")
    print(f"{sel.tokens} tokens in all (approximate: counted without the model's tokenizer)\n")
    print(sel.text)
    return 0


def _import(project, args) -> int:
    from penwright.rag.importers import import_lorebook, import_notes

    source = Path(args.source).expanduser().resolve()
    if not source.exists():
        raise LoreError(f"{source} does not exist.", "Pass a folder of notes or a .json lorebook.")
    out = Path(args.output).expanduser().resolve() if args.output else project.paths.state / "lore-import" / source.stem
    if source.is_dir() and (out == source or out.is_relative_to(source)):
        raise LoreError(f"The output folder {out} is inside the source {source}.", "Choose another --output.")
    report = import_lorebook(source, out) if source.is_file() else import_notes(source, out)
    if args.json:
        print(json.dumps({"written": [str(p) for p in report.written], "skipped": report.skipped}, indent=1))
        return 0
    print(f"Wrote {len(report.written)} lore entries to {out}")
    _print_problems(report.skipped)
    if report.written and out != project.lore_dir:
        print(f"Review them, then move them into {project.lore_dir} and run `penwright lore index`.")
    return 0
