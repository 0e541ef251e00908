"""Helpers for the language-server tests: the real `penwright lsp` subprocess, and a real daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from lsprotocol import types
from pwtest import EXAMPLE, REPO, copy_example, free_port, start_daemon, stop_process, wait_http  # noqa: F401 (EXAMPLE, REPO, free_port: re-exported)
from pytest_lsp import ClientServerConfig, LanguageClient

LSP_CMD = [sys.executable, "-m", "penwright", "lsp"]
DAEMON_START_S = 240


def copy_project(dest: Path, port: int) -> Path:
    copy_example(dest)
    settings = dest / "penwright.yaml"
    text = settings.read_text().replace("training:\n  preset: fast\n", "")
    settings.write_text(
        text + f"server:\n  port: {port}\n"
        # a real training job, short enough for a test: 6 steps of the fast preset
        "training:\n  preset: fast\n  overrides: "
        "{max_steps: 6, eval_every: 3, save_every: 3, warmup_steps: 1, plateau_min_steps: 0}\n",
        encoding="utf-8",
    )
    return dest


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float, log: Path | None = None) -> None:
    wait_http(f"{url}/health", timeout, proc, log)


class Daemon:
    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = root.parent / f"daemon-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        self.proc = start_daemon(self.root, self.log)
        wait_healthy(self.url, self.proc, DAEMON_START_S, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


def init_params(root: Path | None, encoding: str = "utf-16", **options) -> types.InitializeParams:
    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True, show_message=None),
        general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind(encoding)]),
    )
    folders = [types.WorkspaceFolder(uri=root.as_uri(), name=root.name)] if root else None
    return types.InitializeParams(
        capabilities=caps,
        root_uri=root.as_uri() if root else None,
        workspace_folders=folders,
        initialization_options=options or None,
    )


async def start_client(
    root: Path | None = None, env: dict | None = None, encoding: str = "utf-16", **options
) -> LanguageClient:
    """A pytest-lsp client driving a fresh `penwright lsp` subprocess, initialized."""
    config = ClientServerConfig(server_command=LSP_CMD, server_env={**os.environ, **(env or {})})
    client = await config.start()
    await client.initialize_session(init_params(root, encoding, **options))
    return client


async def stop_client(client: LanguageClient) -> None:
    try:
        await client.shutdown_session()
    finally:
        await client.stop()


def open_doc(client: LanguageClient, path: Path, text: str | None = None, language: str = "markdown") -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text if text is not None else path.read_text()
            )
        )
    )
    return uri


def end_position(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1].encode("utf-16-le")) // 2)


@contextlib.asynccontextmanager
async def lsp_session(root: Path | None, env: dict | None = None, encoding: str = "utf-16", **options):
    client = await start_client(root, env=env, encoding=encoding, **options)
    try:
        yield client
    finally:
        await stop_client(client)


def inline_params(uri: str, position: types.Position, invoked: bool = True) -> types.InlineCompletionParams:
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=kind),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position,
    )


async def execute(client: LanguageClient, command: str, *args):
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(args))
    )


async def wait_until(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


async def suggest(client: LanguageClient, uri: str, position: types.Position, tries: int = 3, invoked: bool = True):
    """First non-empty suggestion. builtin:tiny is random-init: a sample may be blank (or only a paragraph break)."""
    for _ in range(tries):
        result = await client.text_document_inline_completion_async(inline_params(uri, position, invoked))
        if result is not None and result.items:
            return result.items[0]
    raise AssertionError(f"no suggestion in {tries} tries")
