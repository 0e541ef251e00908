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
    """(adapter folder, base model path) for a version, a folder, or the live adapter; the base is the one the
    adapter was trained on (recorded in the registry, or in a folder's adapter_config.json), else the project's."""
    from pathlib import Path

    from penwright.errors import RegistryError
    from penwright.workspace import Workspace

    ws = Workspace(project)
    if spec is None:
        live = ws.registry.live()
        if live is None:
            raise RegistryError("No live adapter.", "Name a version (`penwright adapters list`) or a folder.")
        return live.path, ws.adapter_base(live.base_model)
    digits = spec.split("@")[-1].lstrip("v")
    if digits.isdigit() and not Path(spec).exists():
        version = ws.registry.get(int(digits))
        return version.path, ws.adapter_base(version.base_model)
    folder = Path(spec).expanduser()
    return folder, ws.adapter_base(_recorded_base(folder))


def _recorded_base(folder) -> str:
    """`base_model_name_or_path` from a PEFT adapter folder's adapter_config.json ('' when unreadable)."""
    import json

    try:
        return str(json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def run(args: argparse.Namespace) -> int:
    from penwright.trainer.merge import merge_adapter

    project = project_from(args)
    adapter, base = resolve_adapter(project, args.adapter)
    out = merge_adapter(base, adapter, args.out, args.dtype)
    print(f"merged {adapter} into {out}")
    return 0
