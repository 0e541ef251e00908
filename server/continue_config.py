"""A Continue.dev config (a local assistant) that points Continue at this project's daemon.

Written by `penwright continue-config` and the language server's "Set up Continue" command.

Where it goes: `--write` puts it in `<project>/.continue/assistants/penwright.yaml`. Continue loads every YAML
file in a workspace's `.continue/assistants/` (and `.continue/agents/`) as a whole config of its own, with
`name`, `version`, `schema` and `models`, selectable in its assistant menu; so it never has to be merged into
`~/.continue/config.yaml` (pasting a whole config there duplicates those keys).

Continue's `openai` provider posts autocomplete as a fill-in-the-middle prompt to `{apiBase}/completions`
(no `suffix` field); our /v1/completions recognises the `<fim_prefix>…<fim_suffix>…<fim_middle>` sentinels,
so the template below is what Continue sends. Continue puts its snippet header (the file's path, recently
edited and visited snippets, the git diff) into `{{{prefix}}}` before any template sees it, and config.yaml
has no setting to leave it out: the daemon drops it (server/services/continue_prefix.py).
`apiBase` comes from `server.port` in penwright.yaml, where the daemon always listens, not from a running
daemon's state, so it does not go stale. `modelTimeout` (Continue's default 150 ms) is raised to what the
configured device needs. Lore search reaches Continue's chat through its `http` context provider.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

AUTOCOMPLETE_TEMPLATE = "<fim_prefix>{{{prefix}}}<fim_suffix>{{{suffix}}}<fim_middle>"


WORKSPACE_FILE = Path(".continue") / "assistants" / "penwright.yaml"
# Continue's autocomplete waits `modelTimeout` ms for the model (150 by default): enough for a hosted GPU
# model, not for one on this machine's CPU. By the configured backend (auto: unknown, so the CPU figure).
MODEL_TIMEOUT_MS = {"cuda": 1000, "mlx": 1500, "cpu": 4000, "auto": 4000}


def daemon_base(root: Path) -> tuple[str, str | None]:
    """Where the daemon listens by its configuration (penwright.yaml's server.host/port) and its api key.

    A running daemon's own record (daemon.json) is not used: a port it happened to get would go stale."""
    from penwright.server.lsp.daemon import project_server, read_daemon_json
    from penwright.server.settings import ServerSettings

    url, key = project_server(root)
    url = url or f"http://127.0.0.1:{ServerSettings().port}"
    running = read_daemon_json(root)
    if running and running.rstrip("/") != url:
        print(
            f"note: the running daemon listens on {running}, not {url} as penwright.yaml says; restart it "
            "so Continue finds it",
            file=sys.stderr,
        )
    return url, key


def config_block(
    title: str,
    base: str,
    api_key: str | None,
    model: str = "penwright",
    model_timeout_ms: int = MODEL_TIMEOUT_MS["auto"],
) -> dict:
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
                "autocompleteOptions": {
                    "debounceDelay": 350,
                    "maxPromptTokens": 1024,
                    "onlyMyCode": False,
                    "modelTimeout": model_timeout_ms,
                },
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
    timeout = MODEL_TIMEOUT_MS.get(project.settings.model.backend, MODEL_TIMEOUT_MS["auto"])
    block = config_block(project.settings.title, base, key, project.settings.server.model_name, timeout)
    head = (
        f"# Continue.dev config for {project.settings.title}: `penwright continue-config` wrote this.\n"
        f"# A whole Continue config: save it as {WORKSPACE_FILE.as_posix()} in the project (`--write` does),\n"
        "# where Continue loads it as a local assistant. Do not paste it into ~/.continue/config.yaml.\n"
    )
    return head + yaml.safe_dump(block, sort_keys=False, allow_unicode=True)
