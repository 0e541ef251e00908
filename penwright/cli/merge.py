"""`penwright merge`: an adapter merged into its base, written as a full checkpoint (safetensors + tokenizer)."""

from __future__ import annotations

import argparse

from penwright.cli.common import add_project_argument, project_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument(
        "adapter",
        nargs="?",
        default=None,
        help="registry version (7, v7) or adapter folder (default: the live adapter)",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="weights of the merged model (auto: bf16, or fp32 for an fp32 base; never 4-bit)",
    )


def resolve_adapter(project, spec: str | None):
    """(adapter folder, base model path) for a version, a folder, or the live adapter."""
    from pathlib import Path

    from penwright.errors import RegistryError
    from penwright.server.context import manuscript_texts
    from penwright.trainer.models import resolve_model
    from penwright.trainer.registry import Registry

    paths = project.paths.ensure()
    base = resolve_model(project.settings.model.base, paths.models, lambda: manuscript_texts(project))
    reg = Registry(paths.database, paths.adapters)
    if spec is None:
        live = reg.live()
        if live is None:
            raise RegistryError("No live adapter.", "Name a version (`penwright adapters list`) or a folder.")
        return live.path, base
    digits = spec.split("@")[-1].lstrip("v")
    if digits.isdigit() and not Path(spec).exists():
        return reg.get(int(digits)).path, base
    return Path(spec).expanduser(), base


def run(args: argparse.Namespace) -> int:
    from penwright.trainer.merge import merge_adapter

    project = project_from(args)
    adapter, base = resolve_adapter(project, args.adapter)
    out = merge_adapter(base, adapter, args.out, args.dtype)
    print(f"merged {adapter} into {out}")
    return 0
