"""Chat through the real Continue CLI (`cn -p`, headless, from npm's @continuedev/cli) against a real uvicorn
serving the tiny model with a live adapter and the example lore, configured by `penwright continue-config`.

The CLI is found as `cn` on PATH or at $PENWRIGHT_CONTINUE_CLI; `scripts/continue-cli-e2e.sh` installs it and
runs this test. Without it the test skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from serving_fixtures import LiveServer, adapters_for, lore_index, registry_with_adapters, tiny_engine

QUESTION = "Who is Maren Vell? Tell me about her lighthouse."


def continue_cli() -> str:
    cli = os.environ.get("PENWRIGHT_CONTINUE_CLI") or shutil.which("cn")
    if not cli:
        pytest.skip("the Continue CLI (npm @continuedev/cli) is not installed: scripts/continue-cli-e2e.sh")
    return cli


class Recorder:
    """ASGI wrapper (test only): keeps each /v1/chat/completions request body and response bytes."""

    def __init__(self, app):
        self.app, self.calls = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            return await self.app(scope, receive, send)
        call = {"request": b"", "response": b""}
        self.calls.append(call)

        async def recv():
            message = await receive()
            call["request"] += message.get("body", b"")
            return message

        async def snd(message):
            if message["type"] == "http.response.body":
                call["response"] += message.get("body", b"")
            await send(message)

        await self.app(scope, recv, snd)


def streamed(raw: bytes) -> tuple[str, dict]:
    """(content, penwright metadata) of an SSE chat response."""
    content, meta = [], {}
    for line in raw.decode().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            chunk = json.loads(line[5:])
            meta = chunk.get("penwright") or meta
            for choice in chunk.get("choices") or []:
                content.append((choice.get("delta") or {}).get("content") or "")
    return "".join(content), meta


@pytest.mark.slow
def test_continue_cli_chat_uses_the_live_adapter_and_lore(tiny_model_dir, tmp_path_factory, tmp_path):
    from penwright.server.app import create_app
    from penwright.server.context import Services
    from penwright.server.continue_config import config_block
    from penwright.server.settings import ServerSettings

    cli = continue_cli()
    base_temp = tmp_path_factory.getbasetemp()
    registry = registry_with_adapters(tmp_path_factory.mktemp("state"), adapters_for(tiny_model_dir, base_temp))
    services = Services(
        settings=ServerSettings(), engine=tiny_engine(tiny_model_dir), registry=registry, lore=lore_index(base_temp)
    )
    services.sync_live()
    recorder = Recorder(create_app(services))
    try:
        with LiveServer(recorder) as server:
            config = config_block("The Lighthouse", server.url, None)
            config["models"][0]["defaultCompletionOptions"] = {"temperature": 0, "maxTokens": 40}
            (tmp_path / "penwright.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
            home = tmp_path / "home"
            env = {**os.environ, "HOME": str(home), "CONTINUE_GLOBAL_DIR": str(home / ".continue")}
            run = subprocess.run(
                [cli, "-p", QUESTION, "--config", str(tmp_path / "penwright.yaml")],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
    finally:
        services.close()
    assert run.returncode == 0, run.stdout + run.stderr
    (call,) = recorder.calls
    request = json.loads(call["request"])
    assert request["model"] == "penwright" and request["stream"] is True
    assert request["messages"][-1]["content"].startswith(QUESTION) and request["penwright"] == {"lore": True}
    content, meta = streamed(call["response"])
    assert meta["adapter"] == "penwright@v1"  # the live adapter answered
    assert any("maren" in e["id"].lower() for e in meta["lore"]) and meta["lore_tokens"] > 0
    assert content.strip() and content.strip() in run.stdout  # what the CLI printed is what the adapter wrote
