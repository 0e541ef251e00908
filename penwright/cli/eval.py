"""`penwright eval [--adapter vN] [--against base|vM]`: does the adapter write like the author?

Generates from a fixed prompt set drawn from the held-out split, measures both sides (held-out
perplexity, style score, copying, looping, leaked tags, speed) and writes report.json and a
self-contained report.html under `.penwright/reports/`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from penwright.cli.common import add_project_argument, project_from

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from penwright.trainer.evaluate.cli_support import add_settings_arguments

    add_project_argument(parser)
    parser.add_argument("--adapter", default=None, help="adapter version to evaluate, e.g. v3 (default: the live one, else the newest)")
    parser.add_argument("--against", default="base", help="what to compare with: base (default) or a version like v2")
    add_settings_arguments(parser)


def _version(text: str) -> int:
    from penwright.errors import RegistryError

    try:
        return int(text.lower().lstrip("v"))
    except ValueError:
        raise RegistryError(f"'{text}' is not an adapter version.", "Write it as v3 (or 3); `penwright status` lists them.") from None


def _pick_adapter(registry, wanted: str | None):
    from penwright.errors import RegistryError

    if wanted:
        adapter = registry.get(_version(wanted))
    else:
        adapter = registry.live() or registry.latest()
    if adapter is None:
        raise RegistryError("There is no adapter to evaluate yet.", "Train one first (`penwright serve` retrains in the background).")
    if adapter.format != "peft":
        raise RegistryError(f"v{adapter.version} is an MLX adapter; evaluation loads PEFT adapters.", "Evaluate on a machine with the torch backend.")
    return adapter


def _base_path(project, adapter) -> str:
    from penwright.trainer.models import resolve_model

    if adapter is not None and adapter.base_model and Path(adapter.base_model).is_dir():
        return adapter.base_model
    from penwright.server.context import manuscript_texts

    return resolve_model(project.settings.model.base, project.paths.models, lambda: manuscript_texts(project))


def run(args: argparse.Namespace) -> int:
    from penwright.trainer.evaluate import core, report
    from penwright.trainer.evaluate.cli_support import rows_texts, settings_from, stamp, text_table
    from penwright.trainer.registry import Registry

    project = project_from(args)
    paths = project.paths.ensure()
    settings = settings_from(args)
    registry = Registry(paths.database, paths.adapters)
    adapter = _pick_adapter(registry, args.adapter)
    other = None if args.against == "base" else registry.get(_version(args.against))
    dataset = paths.datasets / "current"
    valid = rows_texts(dataset / "valid.jsonl")
    train = [r["messages"][-1]["content"] for r in rows_texts(dataset / "train.jsonl")]
    ctx = core.make_context(valid, None, train, settings)
    base = _base_path(project, adapter)
    sides = [("base" if other is None else f"v{other.version}", None if other is None else str(other.path)),
             (f"v{adapter.version}", str(adapter.path))]
    print(f"Evaluating v{adapter.version} against {sides[0][0]} on {len(ctx.prompts)} prompts from the held-out split...")
    results = core.evaluate_sides(base, sides, ctx, args.device)
    logs = {}
    for v in (adapter, other):
        log_file = paths.runs / str(v.run_id) / "train_log.json" if v is not None and v.run_id else None
        if log_file is not None and log_file.is_file():
            logs[f"{v.run_id} (v{v.version})"] = report.read_train_log(log_file)
    meta = {"project": project.settings.title, "base model": project.settings.model.base, "created": stamp()}
    rep = report.build_report(core.author_summary(ctx), results, logs, meta)
    out = Path(args.out) if args.out else paths.reports / f"{stamp()}-v{adapter.version}-vs-{sides[0][0]}"
    _, html_path = report.write_report(rep, out)
    print(text_table(rep))
    print(f"\nReport: {html_path}")
    return 0
