"""`penwright` command line: one module per verb, imported only when that verb runs.

Each verb module has `add_arguments(parser)` and `run(args) -> int`, and keeps
heavy imports (torch, chromadb...) inside `run` so `penwright --help` and
`penwright lsp` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from penwright.errors import PenwrightError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "init": ("penwright.cli.init", "scaffold a writing project in a folder"),
    "doctor": ("penwright.cli.doctor", "check what this machine can do and what to fix"),
    "curate": ("penwright.cli.curate", "curate the manuscript into a training set"),
    "dataset": ("penwright.cli.dataset", "show (or --dry-run) the training set's figures"),
    "lore": ("penwright.cli.lore", "index, search and check the lore (characters, places, world notes); import notes"),
    "train": ("penwright.cli.train", "train an adapter on the curated set (progress bar, live loss)"),
    "adapters": ("penwright.cli.adapters", "list, show, promote, roll back or delete adapter versions"),
    "merge": ("penwright.cli.merge", "merge an adapter into its base as a full checkpoint"),
    "export": ("penwright.cli.export", "export an adapter: GGUF (llama.cpp), Ollama, a vLLM command, or MLX (fused)"),
    "serve": ("penwright.cli.serve", "run the daemon: HTTP API, watcher, background retraining, dashboard"),
    "status": ("penwright.cli.status", "show what the daemon is doing (--follow: live training progress)"),
    "lsp": ("penwright.cli.lsp", "run the language server for editors (stdio, or --tcp)"),
    "continue-config": (
        "penwright.cli.continue_config",
        "print (or --write) a Continue.dev config.yaml block for this project",
    ),
    "eval": ("penwright.cli.eval", "does the adapter write like you? scores vs the base, report.html"),
    "compare": ("penwright.cli.compare", "compare any base model and adapters on your held-out text"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="penwright", description="A local writing assistant in your own voice.")
    parser.add_argument("--verbose", "-v", action="store_true", help="show debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    verb = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in VERBS else None
    for name, (module, help_text) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if verb is None or name == verb:  # only import what this call needs
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verb:
        parser.print_help()
        return 0
    module = importlib.import_module(VERBS[args.verb][0])
    try:
        return int(module.run(args) or 0)
    except PenwrightError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
