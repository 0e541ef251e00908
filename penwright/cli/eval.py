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
    parser.add_argument(
        "--adapter", default=None, help="adapter version to evaluate, e.g. v3 (default: the live one, else the newest)"
    )
    parser.add_argument("--against", default="base", help="what to compare with: base (default) or a version like v2")
    parser.add_argument(
        "--heldout",
        nargs="*",
        default=None,
        metavar="FILE",
        help="your held-out text files for the voice measures (default: the held-out split's passages)",
    )
    parser.add_argument(
        "--control",
        nargs="*",
        default=None,
        metavar="FILE",
        help="another writer's text for the control perplexity (default: the shipped public-domain passages)",
    )
    parser.add_argument(
        "--exclude-reference",
        nargs="*",
        default=[],
        metavar="AUTHOR",
        help="reference profiles to leave out of the nearest-other-writer Delta (e.g. your own name if listed)",
    )
    parser.add_argument("--voice-only", action="store_true", help="only the voice measures (no report.html)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the voice figures as JSON")
    add_settings_arguments(parser)


def _version(text: str) -> int:
    from penwright.errors import RegistryError

    try:
        return int(text.lower().lstrip("v"))
    except ValueError:
        raise RegistryError(
            f"'{text}' is not an adapter version.", "Write it as v3 (or 3); `penwright status` lists them."
        ) from None


def _pick_adapter(registry, wanted: str | None):
    from penwright.errors import RegistryError

    if wanted:
        adapter = registry.get(_version(wanted))
    else:
        adapter = registry.live() or registry.latest()
    if adapter is None:
        raise RegistryError(
            "There is no adapter to evaluate yet.", "Train one first (`penwright serve` retrains in the background)."
        )
    if adapter.format != "peft":
        raise RegistryError(
            f"v{adapter.version} is an MLX adapter; evaluation loads PEFT adapters.",
            "Evaluate on a machine with the torch backend.",
        )
    return adapter


def _base_path(project, adapter) -> str:
    """The base the adapter was trained on (recorded with it), else the project's."""
    from penwright.workspace import Workspace

    ws = Workspace(project)
    return ws.adapter_base(adapter.base_model) if adapter is not None else ws.base_model()


def voice(args, base: str, sides: list[tuple[str, str | None]], dataset: Path, settings) -> list[dict]:
    """The voice measures of every side against the base, printed side by side (and written with --json)."""
    import json

    from penwright.trainer.evaluate import voice as V
    from penwright.trainer.evaluate.cli_support import read_texts

    control = read_texts(args.control) if args.control else None
    inputs, notes = V.inputs_from_dataset(
        dataset,
        control,
        n_samples=settings.n_samples,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        exclude_authors=tuple(a.lower() for a in args.exclude_reference),
    )
    if args.heldout:
        inputs = V.VoiceInputs(
            read_texts(args.heldout),
            inputs.control,
            inputs.train_texts,
            inputs.n_samples,
            inputs.max_new_tokens,
            seed=inputs.seed,
            exclude_authors=inputs.exclude_authors,
        )
    for note in notes if not args.heldout else []:
        print(f"note: {note}")
    results = V.evaluate_sides(base, [("base", None), *sides], inputs, args.device)
    print(V.table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"sides": results, "notes": notes}, indent=1, default=str))
    return results


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
    base = _base_path(project, adapter)
    sides = [
        ("base" if other is None else f"v{other.version}", None if other is None else str(other.path)),
        (f"v{adapter.version}", str(adapter.path)),
    ]
    voiced = voice(args, base, [s for s in sides if s[1] is not None], dataset, settings)
    if args.voice_only:
        return 0
    from penwright.trainer.dataset import row_target

    train = [row_target(r) for r in rows_texts(dataset / "train.jsonl")]
    ctx = core.make_context(valid, None, train, settings)
    print(
        f"Evaluating v{adapter.version} against {sides[0][0]} on {len(ctx.prompts)} prompts from the held-out split..."
    )
    results = core.evaluate_sides(base, sides, ctx, args.device)
    by_label = {v["label"]: v for v in voiced}
    for r in results:
        r.update({k: v for k, v in by_label.get(r["label"], {}).items() if k not in ("label", "generations")})
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
