"""Bad input never crashes the language server: unknown documents, odd positions, huge or non-UTF-8 text,
wrong settings, and a daemon that is down, then started by the server itself, then killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from lsp_support import copy_project, end_position, execute, free_port, inline_params, lsp_session, open_doc, suggest
from lsprotocol import types

DEAD = "http://127.0.0.1:9"


def ident(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


async def test_unknown_documents_and_positions_past_the_end_give_empty_results(daemon):
    async with lsp_session(daemon.root) as client:
        ghost = (daemon.root / "manuscript" / "never-written.md").as_uri()
        for uri in (ghost, "untitled:Untitled-1", "https://example.invalid/x.md"):
            inline = await client.text_document_inline_completion_async(inline_params(uri, types.Position(3, 3)))
            assert not inline.items
            assert await client.text_document_hover_async(types.HoverParams(ident(uri), types.Position(0, 0))) is None
            assert not await client.text_document_definition_async(
                types.DefinitionParams(ident(uri), types.Position(0, 0))
            )
            done = await client.text_document_completion_async(types.CompletionParams(ident(uri), types.Position(0, 0)))
            assert not done.items
        uri = open_doc(client, daemon.root / "manuscript" / "short.md", "Maren said")
        far = types.Position(500, 500)
        assert await client.text_document_hover_async(types.HoverParams(ident(uri), far)) is None
        item = await suggest(client, uri, far)  # clamped to the end of the text: still a suggestion
        assert item.insert_text.strip()


async def test_huge_and_non_utf8_documents(daemon):
    async with lsp_session(daemon.root) as client:
        huge = ("The lamp burned all night. " * 40 + "\n\n") * 4000  # ~4.4 MB
        uri = open_doc(client, daemon.root / "manuscript" / "huge.md", huge)
        t0 = time.perf_counter()
        item = await suggest(client, uri, end_position(huge))
        assert time.perf_counter() - t0 < 30
        assert len(item.command.arguments[0]["context"]) <= 200  # only a budgeted window went anywhere

        latin1 = daemon.root / "manuscript" / "old-draft.txt"
        latin1.write_bytes("Maren Vell\u2019s caf\u00e9 by Tobias.\n".replace("\u2019", "'").encode("latin-1"))
        hover = await client.text_document_hover_async(types.HoverParams(ident(latin1.as_uri()), types.Position(0, 2)))
        assert hover is not None and hover.contents.value.startswith("**Maren Vell**")


async def test_daemon_down_gives_empty_results_and_a_clear_message(example_project):
    async with lsp_session(example_project, daemonUrl=DEAD, autoStartDaemon=False, temperature="hot") as client:
        warned = [m.message for m in client.messages]
        uri = open_doc(client, example_project / "manuscript" / "01-the-lamp.md")
        inline = await client.text_document_inline_completion_async(inline_params(uri, types.Position(2, 5)))
        assert not inline.items
        done = await client.text_document_completion_async(types.CompletionParams(ident(uri), types.Position(2, 3)))
        assert not done.items
        status = await execute(client, "penwright.status")
        assert status["ok"] is False and "not answering" in status["message"] and "penwright serve" in status["message"]
        # the bad setting was reported, not fatal
        warned = [m.message for m in client.messages]
        assert any("penwright.temperature" in m for m in warned), warned
        # settings re-read on change: point it at nothing else, still no crash
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"penwright": {"inlineEnabled": False}})
        )
        again = await client.text_document_inline_completion_async(inline_params(uri, types.Position(2, 5)))
        assert not again.items


def _kill_daemon(root) -> int | None:
    info = root / ".penwright" / "daemon.json"
    if not info.exists():
        return None
    pid = json.loads(info.read_text())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    return pid


@pytest.mark.slow
async def test_server_starts_the_daemon_and_follows_it_through_a_restart(tmp_path):
    root = copy_project(tmp_path / "novel", free_port())
    try:
        async with lsp_session(root, requestTimeoutSeconds=120) as client:
            uri = open_doc(client, root / "manuscript" / "01-the-lamp.md")
            first = await suggest(client, uri, types.Position(2, 40))  # no daemon yet: the server starts one
            assert first.insert_text.strip()
            pid = _kill_daemon(root)
            assert pid is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (root / ".penwright" / "daemon.json").exists():
                time.sleep(0.2)
            second = await suggest(client, uri, types.Position(4, 20))  # killed: started again, answered
            assert second.insert_text.strip()
            new_pid = json.loads((root / ".penwright" / "daemon.json").read_text())["pid"]
            assert new_pid != pid
    finally:
        pid = _kill_daemon(root)
        deadline = time.monotonic() + 60  # a daemon takes a while to shut down; never leave one behind
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
