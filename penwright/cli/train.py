"""`penwright train`: train an adapter on the curated set, with a progress bar and live loss.

The run goes to `.penwright/runs/<id>/` and its adapter is published in the registry
as a candidate (`--promote` makes it live at once). Every training field can be
overridden from the command line: the flags are derived from TrainingSettings.
"""

from __future__ import annotations

import argparse
import hashlib
import typing
from pathlib import Path

from penwright.cli.common import add_project_argument, project_from
from penwright.trainer.settings import TrainingSettings

_SIMPLE = (int, float, str, bool)


def _flag_type(annotation):
    """The argparse type of a simple schema field (None for complex ones, which take --set)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str
    if set(args) == {bool, float}:  # true, false or a fraction (gradient_checkpointing): pydantic parses the text
        return str
    if annotation in _SIMPLE:
        return annotation
    if len(args) == 1 and args[0] in _SIMPLE:
        return args[0]
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument("--preset", default=None, help="training preset (default: training.preset in penwright.yaml)")
    parser.add_argument("--resume", metavar="RUN_ID", default=None, help="continue an interrupted run")
    parser.add_argument(
        "--init-adapter",
        metavar="PATH_OR_VERSION",
        default=None,
        help="warm start from an adapter folder or a registry version (e.g. 7 or v7)",
    )
    parser.add_argument("--promote", action="store_true", help="make the new adapter live when the run completes")
    parser.add_argument("--no-publish", action="store_true", help="keep the adapter in the run folder only")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    group = parser.add_argument_group("training overrides (defaults come from the preset)")
    for name, field in TrainingSettings.model_fields.items():
        kind = _flag_type(field.annotation)
        if kind is None:
            continue
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            group.add_argument(
                flag, dest=name, default=None, action=argparse.BooleanOptionalAction, help=field.description
            )
        else:
            choices = (
                list(typing.get_args(field.annotation))
                if typing.get_origin(field.annotation) is typing.Literal
                else None
            )
            group.add_argument(flag, dest=name, type=kind, default=None, choices=choices, help=field.description)


def overrides_from(args: argparse.Namespace) -> dict:
    return {n: getattr(args, n) for n in TrainingSettings.model_fields if getattr(args, n, None) is not None}


def dataset_hash(dataset_dir: Path) -> str | None:
    manifest = dataset_dir / "manifest.json"
    if not manifest.is_file():
        return None
    import json

    data = json.loads(manifest.read_text() or "{}")
    return data.get("dataset_hash") or hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    from penwright.errors import DatasetError
    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.registry import Registry
    from penwright.trainer.runs import new_run_id
    from penwright.trainer.settings import TrainingChoice
    from penwright.workspace import Workspace

    project = project_from(args)
    paths = project.paths.ensure()
    choice = project.settings.training
    if args.preset:
        choice = TrainingChoice(preset=args.preset, overrides=choice.overrides)
    settings = load_training_settings(choice, overrides_from(args), project.root)
    dataset_dir = paths.datasets / "current"
    if not (dataset_dir / "train.jsonl").is_file():
        raise DatasetError(f"No training set in {dataset_dir}.", "Run `penwright curate` first.")
    registry = Registry(paths.database, paths.adapters)
    base = Workspace(project).base_model()
    init = _init_adapter(args.init_adapter, registry)
    run_dir = paths.runs / (args.resume or new_run_id())
    result = _train_with_progress(dataset_dir, settings, base, run_dir, project.settings.model, init, args.no_progress)
    print(
        f"run {result.run_id}: {result.status} ({result.stop_reason}) after {result.steps}/{result.total_steps} steps; "
        f"train loss {_fmt(result.train_loss)}, eval loss {_fmt(result.eval_loss)}; "
        f"{result.metrics.get('tokens_per_s', 0):.0f} tokens/s"
    )
    if result.status == "cancelled" or args.no_publish:
        print(f"adapter: {result.adapter_dir}")
        return 0
    version = registry.publish(
        result.adapter_dir,
        base_model=str(base),
        run_id=result.run_id,
        dataset_hash=dataset_hash(dataset_dir),
        metrics={
            "eval_loss": result.eval_loss,
            "train_loss": result.train_loss,
            "steps": result.steps,
            "stop_reason": result.stop_reason,
        },
    )
    if args.promote:
        version = registry.promote(version.version, reason="penwright train --promote")
    print(f"published v{version.version} ({version.status}); `penwright adapters promote {version.version}` serves it")
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _init_adapter(spec: str | None, registry) -> Path | None:
    if not spec:
        return None
    if spec.lstrip("v").isdigit():
        return registry.get(int(spec.lstrip("v"))).path
    return Path(spec).expanduser()


def _train_with_progress(dataset_dir, settings, base, run_dir, model_settings, init, plain: bool):
    from penwright.trainer.train import run_training

    if plain:

        def report(p: dict) -> None:
            ev = f" eval {p['eval_loss']:.4f}" if p.get("eval_loss") is not None else ""
            print(
                f"step {p['step']}/{p['total']} loss {p['loss']:.4f}{ev} lr {p['lr']:.2e} "
                f"{p['tokens_per_s']:.0f} tok/s eta {p['eta_s']:.0f}s",
                flush=True,
            )

        return run_training(
            dataset_dir, settings, base, run_dir, model_settings=model_settings, on_progress=report, init_adapter=init
        )
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("eval {task.fields[eval]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=None, loss="-", eval="-", tps="-")

        def report(p: dict) -> None:
            extra = {"eval": f"{p['eval_loss']:.4f}"} if p.get("eval_loss") is not None else {}
            bar.update(
                task,
                completed=p["step"],
                total=p["total"],
                loss=f"{p['loss']:.4f}",
                tps=f"{p['tokens_per_s']:.0f}",
                **extra,
            )

        return run_training(
            dataset_dir, settings, base, run_dir, model_settings=model_settings, on_progress=report, init_adapter=init
        )
