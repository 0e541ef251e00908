"""`penwright export --format ollama|mlx`: an adapter for Ollama (Modelfile) or MLX (a fused model)."""

from __future__ import annotations

import argparse

from penwright.cli.common import add_project_argument, project_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument("adapter", nargs="?", default=None,
                        help="registry version (7, v7) or adapter folder (default: the live adapter)")
    parser.add_argument("--format", required=True, choices=["ollama", "mlx"])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--merged", action="store_true", help="ollama: ship a merged model instead of FROM base + ADAPTER")


def run(args: argparse.Namespace) -> int:
    from penwright.cli.merge import resolve_adapter
    from penwright.trainer.export import export_mlx, export_ollama

    project = project_from(args)
    adapter, base = resolve_adapter(project, args.adapter)
    if args.format == "ollama":
        path = export_ollama(base, adapter, args.out, merged=args.merged)
        print(f"wrote {path}; then: ollama create penwright -f {path}")
    else:
        path = export_mlx(base, adapter, args.out)
        print(f"wrote {path}; then: mlx_lm.generate --model {path}")
    return 0
