"""Inline completion through the real language server and the real daemon (builtin:tiny)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from lsp_support import end_position, execute, inline_params, lsp_session, open_doc, suggest, wait_until
from lsprotocol import types

CHAPTER_TEXT = (
    "# Chapter Two: The Wreck\n\nMaren Vell climbed the hundred and twelve steps with the oil can. "
    "The sea below was grey, and Tobias waited at the door.\n\nShe looked out at the"
)
SUFFIX = "\n\nBy morning the wind had dropped."


def feedback_rows(daemon) -> list[dict]:
    path = daemon.root / ".penwright" / "feedback.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_inline_completion_uses_prefix_suffix_and_reports_adapter_and_lore(daemon):
    async with lsp_session(daemon.root) as client:
        path = daemon.root / "manuscript" / "02-the-wreck.md"
        text = CHAPTER_TEXT + SUFFIX
        uri = open_doc(client, path, text)
        cursor = end_position(CHAPTER_TEXT)
        item = await suggest(client, uri, cursor)
        assert item.insert_text.strip(), "the daemon's completion should come back as ghost text"
        assert item.range.start == cursor and item.range.end == cursor
        assert item.command.command == "penwright.acceptCompletion"
        meta = item.command.arguments[0]
        served = httpx.get(f"{daemon.url}/api/status", timeout=10).json()["adapter"]
        assert meta["adapter"] == served  # penwright:base, or the live adapter if a test trained one
        assert meta["chapter"] == 2  # from the heading (and the file name)
        assert meta["text"] == item.insert_text and meta["uri"] == uri
        assert "style.md" in " ".join(map(str, meta["lore"])) or meta["lore"], "lore used should be reported"
        assert meta["context"].endswith("She looked out at the")

        # accepting records the suggestion (through the daemon's /api/feedback)
        accepted = await execute(client, "penwright.acceptCompletion", meta)
        assert accepted["ok"] and accepted["recorded"] == "daemon"
        rows = feedback_rows(daemon)
        assert rows[-1]["accepted"] is True and rows[-1]["text"] == item.insert_text and rows[-1]["adapter"] == served


async def test_typing_into_a_shown_suggestion_reuses_it_and_typing_away_rejects_it(daemon):
    async with lsp_session(daemon.root) as client:
        path = daemon.root / "manuscript" / "03-the-ledger.md"
        uri = open_doc(client, path, CHAPTER_TEXT)
        cursor = end_position(CHAPTER_TEXT)
        first = await suggest(client, uri, cursor)
        shown = first.insert_text
        assert len(shown) >= 2
        # VS Code asks again at the same place (e.g. after a dismissal): the same suggestion, no daemon call
        same = (await client.text_document_inline_completion_async(inline_params(uri, cursor, invoked=False))).items[0]
        assert same.command.arguments[0]["id"] == first.command.arguments[0]["id"] and same.insert_text == shown
        typed = shown[:2]
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangePartial(range=types.Range(cursor, cursor), text=typed)],
            )
        )
        after = end_position(CHAPTER_TEXT + typed)
        again = (await client.text_document_inline_completion_async(inline_params(uri, after, invoked=False))).items[0]
        assert again.insert_text == shown[2:], "the rest of the shown suggestion, without a new daemon call"
        meta = again.command.arguments[0]
        assert meta["id"] == first.command.arguments[0]["id"] and meta["text"] == shown and meta["typed"] == 2

        before = len(feedback_rows(daemon))
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(after, after), text="\u00a7zz ")
                ],
            )
        )
        moved = end_position(CHAPTER_TEXT + typed + "\u00a7zz ")
        await client.text_document_inline_completion_async(inline_params(uri, moved, invoked=False))
        assert await wait_until(lambda: len(feedback_rows(daemon)) > before, 10)
        rejected = feedback_rows(daemon)[-1]
        assert rejected["accepted"] is False and rejected["id"] == first.command.arguments[0]["id"]


def engine_counts(daemon) -> dict:
    engine = httpx.get(f"{daemon.url}/api/status", timeout=10).json()["engine"]
    return {k: engine[k] for k in ("served", "cancelled", "active")}


async def test_cancel_request_stops_the_work_in_the_daemon_too(daemon):
    # a long paragraph from a short prompt, so generation is still running when the cancel arrives
    # greedy: a random-init model then loops without ever reaching a stop token, so the request runs until cancelled
    async with lsp_session(daemon.root, paragraphTokens=1800, prefixTokens=64, suffixTokens=0, temperature=0) as client:
        path = daemon.root / "manuscript" / "01-the-lamp.md"
        uri = open_doc(client, path)
        before = engine_counts(daemon)
        msg_id = "cancel-me"
        future = asyncio.ensure_future(
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, types.Position(4, 10)), msg_id=msg_id
            )
        )
        assert await wait_until(lambda: engine_counts(daemon)["active"] > 0, 15, interval=0.05), (
            "never reached the daemon"
        )
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        with pytest.raises(Exception) as err:
            await asyncio.wait_for(future, 15)
        assert "cancel" in str(err.value).lower() or "-32800" in str(err.value)
        # the daemon saw the HTTP request go away and stopped generating
        assert await wait_until(lambda: engine_counts(daemon)["cancelled"] > before["cancelled"], 15), engine_counts(
            daemon
        )
        assert engine_counts(daemon)["active"] == 0
        # and the server is still healthy: the next request is answered
        result = await client.text_document_inline_completion_async(inline_params(uri, types.Position(4, 10)))
        assert result is not None


async def test_settings_changes_apply_at_once(daemon):
    async with lsp_session(daemon.root) as client:
        uri = open_doc(client, daemon.root / "manuscript" / "01-the-lamp.md", CHAPTER_TEXT)
        cursor = end_position(CHAPTER_TEXT)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"penwright": {"model": "penwright:base", "sentenceTokens": 8}})
        )
        item = await suggest(client, uri, cursor)
        assert item.command.arguments[0]["adapter"] == "penwright:base"
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"penwright": {"inlineEnabled": False}})
        )
        served = engine_counts(daemon)["served"]
        off = await client.text_document_inline_completion_async(inline_params(uri, cursor))
        assert not off.items and engine_counts(daemon)["served"] == served  # not even asked
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"penwright": {"inlineEnabled": True}})
        )
        assert (await suggest(client, uri, cursor)).insert_text.strip()
