"""`penwright compare --base MODEL --adapters DIR [DIR ...] --reference FILE ...`: any base and adapters.

Needs no project: the author's held-out prose comes from --reference files (or a --valid JSONL
split) and the training text for the copy guard from --train files.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from penwright.trainer.evaluate.cli_support import add_settings_arguments

    parser.add_argument("--base", required=True, help="base model: a local folder (or a cached hub id)")
    parser.add_argument("--adapters", nargs="*", default=[], help="PEFT adapter folders to compare with the base")
    parser.add_argument(
        "--reference", nargs="*", default=[], help="the author's held-out text files (prompts and style target)"
    )
    parser.add_argument("--valid", default=None, help="a held-out valid.jsonl split (rows of {messages})")
    parser.add_argument(
        "--train", nargs="*", default=[], help="training text files, or a train.jsonl, for the copy guard"
    )
    parser.add_argument("--no-base", action="store_true", help="do not evaluate the bare base model")
    add_settings_arguments(parser)


def _train_texts(paths: list[str]) -> list[str]:
    from penwright.trainer.dataset import row_target
    from penwright.trainer.evaluate.cli_support import read_texts, rows_texts

    out = []
    for p in paths:
        if p.endswith(".jsonl"):
            out += [row_target(r) for r in rows_texts(Path(p))]
        else:
            out += read_texts([p])
    return out


def run(args: argparse.Namespace) -> int:
    from penwright.errors import PenwrightError
    from penwright.trainer.evaluate import core, report
    from penwright.trainer.evaluate.cli_support import read_texts, rows_texts, settings_from, stamp, text_table
    from penwright.trainer.models import resolve_model

    if not args.reference and not args.valid:
        raise PenwrightError(
            "Nothing to evaluate against.", "Pass --reference FILE (the author's held-out text) or --valid valid.jsonl."
        )
    for a in args.adapters:
        if not (Path(a) / "adapter_config.json").is_file():
            raise PenwrightError(
                f"{a} is not a PEFT adapter folder (no adapter_config.json).", "Pass the folder of a trained adapter."
            )
    base = resolve_model(args.base, Path("."))
    valid = rows_texts(Path(args.valid)) if args.valid else None
    from penwright.trainer.evaluate.style import unwrap

    refs = [unwrap(t) for t in read_texts(args.reference)] if args.reference else None  # hard-wrapped files too
    ctx = core.make_context(valid, refs, _train_texts(args.train) or None, settings_from(args))
    sides = ([] if args.no_base else [("base", None)]) + [(Path(a).name or a, a) for a in args.adapters]
    labels = [s[0] for s in sides]
    sides = [(lab if labels.count(lab) == 1 else f"{lab} ({i})", p) for i, (lab, p) in enumerate(sides)]
    results = core.evaluate_sides(base, sides, ctx, args.device)
    logs = {}
    for label, path in sides:  # a run's adapter lives in runs/<id>/adapter, its log in runs/<id>/train_log.json
        found = [
            f
            for f in (Path(path or ".") / "train_log.json", Path(path or ".").parent / "train_log.json")
            if path and f.is_file()
        ]
        if found:
            logs[label] = report.read_train_log(found[0])
    rep = report.build_report(core.author_summary(ctx), results, logs, {"base model": args.base, "created": stamp()})
    out = Path(args.out) if args.out else Path("penwright-compare-" + stamp())
    _, html_path = report.write_report(rep, out)
    print(text_table(rep))
    print(f"\nReport: {html_path}")
    return 0
