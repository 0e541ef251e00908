"""`penwright continue-config`: a Continue.dev `config.yaml` block that points Continue at this project's daemon.

Continue's `openai` provider posts autocomplete as a fill-in-the-middle prompt
to `{apiBase}/completions` (no `suffix` field); our /v1/completions recognises
the `<fim_prefix>…<fim_suffix>…<fim_middle>` sentinels in the prompt, so the
template below is what Continue sends. Lore search reaches Continue's chat
through its `http` context provider, posting to /api/lore/context.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from penwright.cli.common import add_project_argument
from penwright.errors import PenwrightError

AUTOCOMPLETE_TEMPLATE = "<fim_prefix>{{{prefix}}}<fim_suffix>{{{suffix}}}<fim_middle>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument(
        "--write", nargs="?", const="", default=None, metavar="PATH",
        help="write the block to PATH (default: .penwright/continue/config.yaml) instead of printing it",
    )
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")


def daemon_base(root: Path) -> tuple[str, str | None]:
    """Where the daemon listens (daemon.json first, then penwright.yaml) and its api key."""
    from penwright.server.lsp.daemon import project_server, read_daemon_json
    from penwright.server.settings import ServerSettings

    url, key = project_server(root)
    return (read_daemon_json(root) or url or f"http://127.0.0.1:{ServerSettings().port}"), key


def config_block(title: str, base: str, api_key: str | None, model: str = "penwright") -> dict:
    return {
        "name": f"Penwright: {title}",
        "version": "0.1.0",
        "schema": "v1",
        "models": [
            {
                "name": f"Penwright ({title})",
                "provider": "openai",
                "model": model,
                "apiBase": f"{base}/v1",
                "apiKey": api_key or "penwright-local",
                "roles": ["chat", "edit", "autocomplete"],
                "defaultCompletionOptions": {"temperature": 0.8, "maxTokens": 160},
                "promptTemplates": {"autocomplete": AUTOCOMPLETE_TEMPLATE},
                "autocompleteOptions": {"debounceDelay": 350, "maxPromptTokens": 1024, "onlyMyCode": False},
                "requestOptions": {"extraBodyProperties": {"penwright": {"lore": True}}},
            }
        ],
        "context": [
            {
                "provider": "http",
                "name": "lore",
                "params": {
                    "url": f"{base}/api/lore/context",
                    "title": "lore",
                    "displayTitle": "Lore",
                    "description": "Characters, places and world notes from this project's lore folder",
                },
            }
        ],
    }


def render(root: Path) -> str:
    from penwright.project import load_project

    project = load_project(root)
    base, key = daemon_base(project.root)
    block = config_block(project.settings.title, base, key, project.settings.server.model_name)
    head = f"# Continue.dev config for {project.settings.title}: `penwright continue-config` wrote this.\n"
    return head + yaml.safe_dump(block, sort_keys=False, allow_unicode=True)


def run(args: argparse.Namespace) -> int:
    from penwright.cli.common import project_from

    project = project_from(args)
    text = render(project.root)
    if args.write is None:
        sys.stdout.write(text)
        return 0
    target = Path(args.write) if args.write else project.paths.state / "continue" / "config.yaml"
    if target.exists() and not args.force:
        raise PenwrightError(f"{target} exists", "pass --force to overwrite it, or --write another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0
