"""Engine channel -> OpenAI responses: JSON or server-sent events, with Penwright's metadata.

The first channel item (Started, or the request's error) arrives before any
byte is sent, so errors found at admission are proper HTTP errors and the
headers can name the adapter. A client that goes away cancels the request:
the engine stops generating before its next token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from penwright.server.engine import Delta, Finished
from penwright.server.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    CompletionChoice,
    CompletionResponse,
    PenwrightMeta,
    Usage,
    new_id,
    now,
)
from penwright.server.services.errors import api_error
from penwright.server.services.logprobs import Reporting
from penwright.server.services.models import served_id

log = logging.getLogger(__name__)
DISCONNECT_POLL_S = 0.25


def meta_headers(meta: PenwrightMeta) -> dict:
    return {"X-Penwright-Adapter": meta.adapter, "X-Penwright-Lore": ",".join(quote(e.id, safe="") for e in meta.lore)}


def _usage(fin: Finished) -> Usage:
    return Usage(
        prompt_tokens=fin.prompt_tokens,
        completion_tokens=fin.completion_tokens,
        total_tokens=fin.prompt_tokens + fin.completion_tokens,
    )


def _reason(fin: Finished) -> str:
    return "length" if fin.finish_reason == "length" else "stop"


async def respond(
    prepared, services, http: Request, stream: bool, include_usage: bool, reporting: Reporting | None = None
):
    """Run a prepared request on the engine; return the HTTP response (with logprobs/echo as `reporting` asks)."""
    reporting = reporting or Reporting()
    for hook in services.on_request:  # e.g. the daemon pausing training while the author types
        hook()
    from penwright.server.metrics import metrics_of

    channel = metrics_of(http.app).watch(services.engine.submit(prepared.request))
    try:
        started = await channel.aget()
    except BaseException:
        channel.cancel()
        raise
    meta = PenwrightMeta(
        adapter=served_id(services.model_name, started.adapter),
        lore=prepared.lore,
        lore_tokens=prepared.lore_tokens,
        truncated_tokens=started.truncated_tokens,
    )
    model = meta.adapter
    if stream:
        echo = reporting.echo_text(services.engine.decode)
        body = _sse(channel, prepared.kind, model, meta, include_usage, echo)
        return StreamingResponse(body, media_type="text/event-stream", headers=meta_headers(meta))
    text, fin = await _collect(channel, http)
    echo, logprobs = await _reported(services.engine, prepared, started, fin, text, reporting)
    if prepared.kind == "chat":
        out = ChatCompletionResponse(
            id=new_id("chatcmpl"),
            created=now(),
            model=model,
            usage=_usage(fin),
            penwright=meta,
            choices=[
                ChatChoice(
                    message=ChatDelta(role="assistant", content=text), logprobs=logprobs, finish_reason=_reason(fin)
                )
            ],
        )
    else:
        out = CompletionResponse(
            id=new_id("cmpl"),
            created=now(),
            model=model,
            usage=_usage(fin),
            penwright=meta,
            choices=[CompletionChoice(text=echo + text, logprobs=logprobs, finish_reason=_reason(fin))],
        )
    return JSONResponse(out.model_dump(exclude_none=False), headers=meta_headers(meta))


async def _reported(engine, prepared, started, fin: Finished, text: str, reporting: Reporting):
    """(echoed prompt or "", logprobs object or None) for a finished non-streamed request."""
    from penwright.server.services import logprobs as lp

    echo = reporting.echo_text(engine.decode)
    if reporting.logprobs is None:
        return echo, None
    prompt_ids = lp.served_prompt_ids(engine, prepared.request.prompt, started.truncated_tokens)
    gen = lp.reported_ids(engine.decode, fin.token_ids, text)
    echo_n = lp.echo_span(engine.decode, prompt_ids, echo) if echo else 0
    scored = await lp.score(
        engine, prompt_ids, gen, echo_n, started.adapter, prepared.request.adapter_scale, reporting.logprobs
    )
    if prepared.kind == "chat":
        return echo, lp.chat_logprobs(engine.decode, scored)
    return echo, lp.completion_logprobs(engine.decode, scored, echo_n, len(echo))


async def _collect(channel, http: Request) -> tuple[str, Finished]:
    """Whole completion; cancels it if the client disconnects while waiting."""
    parts: list[str] = []

    async def read() -> Finished:
        async for item in channel:
            if isinstance(item, Delta):
                parts.append(item.text)
            elif isinstance(item, Finished):
                return item

    task = asyncio.ensure_future(read())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return "".join(parts), task.result()
            if await http.is_disconnected():
                channel.cancel()
    finally:
        if not task.done():
            channel.cancel()
            task.cancel()


def _sse_line(obj) -> str:
    data = obj if isinstance(obj, dict) else obj.model_dump(exclude_none=True)
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _sse(channel, kind: str, model: str, meta: PenwrightMeta, include_usage: bool, echo: str = ""):
    """Server-sent events in OpenAI's chunk shapes; ends with `data: [DONE]`."""
    rid, created = new_id("chatcmpl" if kind == "chat" else "cmpl"), now()

    def chunk(text: str | None, reason: str | None = None, first: bool = False, extra: bool = False):
        if kind == "chat":
            delta = ChatDelta(role="assistant" if first else None, content=text)
            c = ChatCompletionChunk(
                id=rid, created=created, model=model, choices=[ChatChunkChoice(delta=delta, finish_reason=reason)]
            )
        else:
            c = CompletionResponse(
                id=rid, created=created, model=model, choices=[CompletionChoice(text=text or "", finish_reason=reason)]
            )
        if extra:
            c.penwright = meta
        return _sse_line(c)

    try:
        if kind == "chat":
            yield chunk("", first=True)
        elif echo:
            yield chunk(echo)
        async for item in channel:
            if isinstance(item, Delta):
                yield chunk(item.text)
            elif isinstance(item, Finished):
                yield chunk(None if kind == "chat" else "", _reason(item), extra=True)
                if include_usage:
                    yield _sse_line(
                        {
                            "id": rid,
                            "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": _usage(item).model_dump(),
                        }
                    )
        yield "data: [DONE]\n\n"
    except Exception as err:  # an error after the headers went out: tell the client in-band
        yield _sse_line(api_error(err).body())
    finally:
        channel.cancel()  # client gone (CancelledError/GeneratorExit) or done: either way stop generating
