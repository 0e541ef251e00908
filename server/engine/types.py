"""What goes into the engine and what comes back: requests, sampling, and the per-request channel."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# Adapter names become attribute keys inside PEFT modules: no dots, slashes or "..".
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

LIVE = "@live"  # request the adapter that is live when the request starts
BASE = "@base"  # request the base model, adapters disabled


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    min_p: float = 0.0  # drop tokens below min_p x the top token's probability; 0 = off
    seed: int | None = None
    repetition_penalty: float = 1.0  # HF-style, over prompt + generated tokens
    frequency_penalty: float = 0.0  # OpenAI-style, over generated tokens
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()


@dataclass
class GenerationRequest:
    """One generation. `prompt` is text (special tokens in it are honoured) or token ids."""

    prompt: str | list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    adapter: str = LIVE  # LIVE, BASE or a loaded adapter name
    adapter_scale: float | None = None  # multiplies the adapter's own scale for this request
    truncate: Literal["left", "error"] = "left"  # prompt longer than the context allows
    # Called with the text generated so far; returns an index to cut the text at and stop, or None.
    stop_check: Callable[[str], int | None] | None = None
    id: str = ""


@dataclass(frozen=True)
class Started:
    """First item on every successful channel: what the request is served with."""

    adapter: str | None  # adapter name, None for the base model
    prompt_tokens: int
    truncated_tokens: int  # dropped from the left of the prompt to fit the context


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    adapter: str | None
    token_ids: tuple[int, ...] = ()  # the generated ids (without the end-of-text token), for logprobs


class Channel:
    """Response channel of one request: the engine thread puts, one consumer (thread or asyncio) reads.

    Items are Started, then Delta..., then Finished; or an exception (raised to the reader).
    `cancel()` (client gone) makes the engine stop this request before its next token.
    """

    def __init__(self) -> None:
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.cancelled = threading.Event()
        self.closed = False

    def put(self, item) -> None:
        with self._lock:
            if isinstance(item, (Finished, BaseException)):
                self.closed = True
            self._items.append(item)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed: reader is gone
                pass

    def cancel(self) -> None:
        self.cancelled.set()

    def _pop(self):
        item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    def get(self, timeout: float | None = None):
        """Next item (blocking). Raises the request's error, or TimeoutError."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise TimeoutError("no output from the engine in time")
            return self._pop()

    async def aget(self):
        """Next item, awaiting without blocking the event loop."""
        while True:
            with self._lock:
                if self._items:
                    return self._pop()
                event = asyncio.Event()
                self._waiters.append((asyncio.get_running_loop(), event))
            await event.wait()

    def __iter__(self):
        while True:
            item = self.get()
            yield item
            if isinstance(item, Finished):
                return

    async def __aiter__(self):
        while True:
            item = await self.aget()
            yield item
            if isinstance(item, Finished):
                return

    def text(self, timeout: float | None = None) -> tuple[str, Finished]:
        """Wait for the whole completion (sync callers: benchmarks, scripts)."""
        parts = []
        while True:
            item = self.get(timeout)
            if isinstance(item, Delta):
                parts.append(item.text)
            elif isinstance(item, Finished):
                return "".join(parts), item
