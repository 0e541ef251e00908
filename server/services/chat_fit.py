"""Chat fitting: linear in the chat's length, off the event loop, and stopped when its client leaves.

`fit_chat` drops the oldest non-system turns until the chat prompt fits a token budget. It counts each
message once (long ones in slices), checking between them whether to stop; it estimates the chat template's
own tokens from a few of the last turns with their text left out, and renders and measures only the turns
it keeps. So no call holds the tokenizer (shared with generation) for much longer than one message, and a
chat as large as the body limit allows costs one pass over its text.

`fit_while_connected` runs it in a worker thread and tells it to stop when the client disconnects (asked
every `POLL_SECONDS`) or the request is cancelled: the work ends within one message (or slice) of that.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from penwright.server.services.errors import ApiError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
SLICE_CHARS = 16_384  # a long message is counted in slices, checking between them whether to stop
SAMPLE_TURNS = 16  # turns rendered without their text to measure the template's own tokens
ROUNDS = 4  # render-and-measure rounds; each drops at least what the last measurement said was too much
CLIENT_LEFT = 499  # nginx's "client closed request": nobody reads the answer, the status is for the log

Render = Callable[[list[dict]], str]
Count = Callable[[str], int]


class Stopped(Exception):
    """The fitting was told to stop (its client left) after counting `done` of `total` messages."""

    def __init__(self, done: int, total: int):
        super().__init__(f"stopped after {done} of {total} messages")
        self.done, self.total = done, total


def fit_chat(
    messages: list[dict], budget: int, render: Render, count: Count, stop: threading.Event | None = None
) -> str:
    """Chat prompt text within `budget` tokens: the oldest non-system turns (never the last message) go first.

    When only the system prompt and the last turn are left and they still do not fit, that prompt is returned
    as it is (the engine trims it from the left). Raises `Stopped` soon after `stop` is set."""
    sizes = []
    for m in messages:
        _check(stop, len(sizes), len(messages))
        sizes.append(_count_text(m["content"], count, stop, len(sizes), len(messages)))
    fixed, per_turn = template_cost(messages, render, count)
    droppable = iter([i for i, m in enumerate(messages[:-1]) if m["role"] != "system"])
    dropped: set[int] = set()
    total = fixed + sum(sizes) + per_turn * len(messages)  # an estimate until measured below
    for _ in range(ROUNDS):
        excess, left = total - budget, True
        while excess > 0 and left:
            i = next(droppable, None)
            left = i is not None
            if left:
                dropped.add(i)
                excess -= sizes[i] + per_turn
        _check(stop, len(messages), len(messages))
        prompt = render([m for i, m in enumerate(messages) if i not in dropped])
        if not left:
            return prompt  # nothing more may go: measuring it would change nothing
        total = count(prompt)
        if total <= budget:
            return prompt
    return prompt


def template_cost(messages: list[dict], render: Render, count: Count) -> tuple[int, int]:
    """(fixed, per turn): the template's own tokens, from the leading system prompts and the last turns with their
    text left out. An estimate: fitting measures what it keeps; a template that refuses the sample counts as free."""
    head = [m for m in messages[: len(messages) - SAMPLE_TURNS] if m["role"] == "system"][:2]
    sample = [{**m, "content": ""} for m in (*head, *messages[-SAMPLE_TURNS:])]
    try:
        tokens = count(render(sample))
    except Exception as err:  # noqa: BLE001 (some templates refuse a chat that starts mid-conversation)
        log.debug("chat template cost not measured (%s); fitting by measurement alone", err)
        return 0, 0
    per_turn = tokens // len(sample)  # the fixed part (generation prompt, default system) is smaller than the sample
    return tokens - per_turn * len(sample), per_turn


async def fit_while_connected(
    messages: list[dict],
    budget: int,
    render: Render,
    count: Count,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> str:
    """`fit_chat` in a worker thread, stopped when `disconnected()` turns true (answered with a 499 nobody reads)
    or when the request is cancelled (the cancellation goes on up)."""
    stop = threading.Event()
    work = partial(fit_chat, messages, budget, render, count, stop)
    log.debug("fitting a chat of %d messages into %d tokens", len(messages), budget)
    task = asyncio.ensure_future(anyio.to_thread.run_sync(work, abandon_on_cancel=True))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                return task.result()
            if disconnected is not None and await disconnected():
                stop.set()
                return await _client_left(task)
    finally:
        stop.set()  # cancelled while waiting: the worker stops at its next check
        if not task.done():
            task.cancel()


async def _client_left(task: asyncio.Future) -> str:
    try:
        await task  # ends within one message of the stop (or had just finished)
    except Stopped as err:
        log.info("chat fitting stopped: the client left (%d of %d messages counted)", err.done, err.total)
    else:
        log.info("chat fitted, but the client had left")
    raise ApiError(
        CLIENT_LEFT,
        "The client closed the connection before the chat was fitted; nothing was generated.",
        "client_disconnected",
    )


def _check(stop: threading.Event | None, done: int, total: int) -> None:
    if stop is not None and stop.is_set():
        raise Stopped(done, total)


def _count_text(text: str, count: Count, stop: threading.Event | None, done: int, total: int) -> int:
    if len(text) <= SLICE_CHARS:
        return count(text)
    tokens = 0
    for start in range(0, len(text), SLICE_CHARS):
        _check(stop, done, total)
        tokens += count(text[start : start + SLICE_CHARS])
    return tokens
