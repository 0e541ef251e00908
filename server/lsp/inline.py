"""`textDocument/inlineCompletion`: ghost text in the author's voice, from the daemon's /v1/completions.

The handler is async: a `$/cancelRequest` (every keystroke sends one) cancels the
task, which closes the HTTP request to the daemon, which stops generating.
A suggestion already shown is reused while the author types into it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from lsprotocol import types

from penwright.server.lsp.daemon import DaemonError, DaemonUnavailable
from penwright.server.lsp.feedback import record_feedback
from penwright.server.lsp.server import Shown
from penwright.server.lsp.settings import CHARS_PER_TOKEN
from penwright.server.lsp.text import context_at, document_text, infer_chapter, offset_at

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "penwright.acceptCompletion"
TAIL = 200  # characters of prefix remembered to recognise typing into a shown suggestion
EMPTY = types.InlineCompletionList(items=[])


def register(ls) -> None:
    @ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        t0 = time.perf_counter()
        try:
            return await complete(ls, params)
        except asyncio.CancelledError:
            log.debug(
                "inline at %d:%d cancelled after %.0f ms",
                params.position.line,
                params.position.character,
                1000 * (time.perf_counter() - t0),
            )
            raise
        except DaemonUnavailable as err:
            ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=str(err)))
        except DaemonError as err:
            ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=f"completion: {err}"))
        return EMPTY


async def complete(ls, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    settings = ls.settings
    uri = params.text_document.uri
    if not settings.inline_enabled:
        return EMPTY
    text = document_text(ls, uri)
    if text is None:
        return EMPTY
    offset = offset_at(text, params.position, ls.position_encoding)
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    reused = _from_cache(ls, uri, text, offset, same_place=not invoked)  # asked explicitly: a fresh one
    if reused is not None:
        return _as_list(reused, params.position)
    _retire_unaccepted(ls, uri)
    ctx = context_at(text, offset, settings.prefix_tokens * CHARS_PER_TOKEN, settings.suffix_tokens * CHARS_PER_TOKEN)
    if not ctx.prefix.strip():
        return EMPTY
    if not invoked and settings.debounce_ms:
        await asyncio.sleep(settings.debounce_ms / 1000)  # the next keystroke cancels this before the daemon sees it
    chapter = infer_chapter(uri, text, offset)
    ls.root_for(uri)
    body = {
        "model": settings.model,
        "prompt": ctx.prefix,
        "suffix": ctx.suffix,
        "max_tokens": settings.paragraph_tokens if invoked else settings.sentence_tokens,
        "temperature": settings.temperature,
        "penwright": {"chapter": chapter, "stop_at": "paragraph" if invoked else "sentence", "lore": settings.lore},
    }
    t0 = time.perf_counter()
    result = await ls.daemon.request("POST", "/v1/completions", json=body)
    insert, adapter, lore = _parse(result)
    log.info(
        "inline (%s, chapter %s): %d chars from %s in %.0f ms",
        body["penwright"]["stop_at"],
        chapter,
        len(insert),
        adapter,
        1000 * (time.perf_counter() - t0),
    )
    if not insert.strip():
        return EMPTY
    insert = _fit(ctx.prefix, insert)
    shown = Shown(str(uuid.uuid4()), uri, text[max(0, offset - TAIL) : offset], insert, adapter, lore, chapter)
    ls.remember(shown)
    return _as_list(shown, params.position)


def _parse(result) -> tuple[str, str | None, list[dict]]:
    if not isinstance(result, dict) or not result.get("choices"):
        return "", None, []
    choice = result["choices"][0]
    text = choice.get("text") if isinstance(choice, dict) else None
    meta = result.get("penwright") if isinstance(result.get("penwright"), dict) else {}
    lore = [x for x in meta.get("lore") or [] if isinstance(x, dict)]
    return (text if isinstance(text, str) else ""), meta.get("adapter"), lore


def _fit(prefix: str, insert: str) -> str:
    """No doubled space at the join: 'said ' + ' she' -> 'said she'."""
    if prefix.endswith((" ", "\n")) and insert.startswith(" "):
        insert = insert.lstrip(" ")
    return insert.rstrip() if "\n\n" not in insert else insert


def _from_cache(ls, uri: str, text: str, offset: int, same_place: bool = True) -> Shown | None:
    """If the author typed the first characters of the shown suggestion, return what is left of it
    (with `same_place`, also the whole suggestion again when nothing was typed)."""
    shown = ls.shown.get(uri)
    if shown is None or shown.resolved:
        return None
    before = text[max(0, offset - TAIL - len(shown.text)) : offset]
    start = before.rfind(shown.prefix_end[-60:]) if shown.prefix_end else -1
    if start < 0:
        return None
    typed = before[start + len(shown.prefix_end[-60:]) :]
    if (not typed and not same_place) or len(typed) >= len(shown.text) or not shown.text.startswith(typed):
        return None
    rest = shown.text[len(typed) :]
    return Shown(
        shown.id,
        uri,
        text[max(0, offset - TAIL) : offset],
        rest,
        shown.adapter,
        shown.lore,
        shown.chapter,
        full=shown.text,
    )


def _retire_unaccepted(ls, uri: str) -> None:
    """A shown suggestion the author typed past (or away from) without accepting counts as rejected."""
    shown = ls.shown.pop(uri, None)
    if shown is not None and not shown.resolved:
        ls.spawn(record_feedback(ls, _payload(shown), accepted=False))


def _payload(shown: Shown) -> dict:
    return {
        "id": shown.id,
        "uri": shown.uri,
        "text": shown.full or shown.text,  # the whole suggestion, also when accepted after typing part of it
        "typed": len(shown.full) - len(shown.text) if shown.full else 0,
        "context": shown.prefix_end,
        "adapter": shown.adapter,
        "lore": [x.get("id") or x.get("name") for x in shown.lore],
        "chapter": shown.chapter,
    }


def _as_list(shown: Shown, position: types.Position) -> types.InlineCompletionList:
    command = types.Command(title="Penwright: suggestion accepted", command=ACCEPT_COMMAND, arguments=[_payload(shown)])
    item = types.InlineCompletionItem(
        insert_text=shown.text, range=types.Range(start=position, end=position), command=command
    )
    return types.InlineCompletionList(items=[item])
