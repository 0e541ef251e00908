"""In-process publish/subscribe for daemon events, fanned out to server-sent events.

Producers are threads (watcher, scheduler, runner reader); consumers are SSE
connections on the asyncio loop and in-process listeners (tests, the language
server bridge). Every event gets an increasing `id`; the bus keeps a short
history so a client that reconnects with `Last-Event-ID` (or `?since=`) misses
nothing. Event shapes follow docs/architecture.md: `{"type": ..., ...}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[dict], None]
STOPPING = "daemon.stopping"


class EventBus:
    def __init__(self, history: int = 2000):
        self._lock = threading.Lock()
        self._history: deque[dict] = deque(maxlen=history)
        self._next_id = 1
        self._listeners: list[Listener] = []

    def publish(self, type_: str, **fields: Any) -> dict:
        """Record and fan out one event; never raises into the producer."""
        with self._lock:
            event = {"type": type_, **fields, "id": self._next_id, "time": round(time.time(), 3)}
            self._next_id += 1
            self._history.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken consumer must not break training or the watcher
                log.exception("event listener failed")
        return event

    def since(self, last_id: int = 0) -> list[dict]:
        with self._lock:
            return [e for e in self._history if e["id"] > last_id]

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    async def stream(self, last_id: int = 0, heartbeat_s: float = 15.0) -> AsyncIterator[dict | None]:
        """Yield events after `last_id`, then live ones; `None` is a heartbeat tick."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict] = asyncio.Queue()

        def forward(event: dict) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # loop closed: the client went away
                pass

        unsubscribe = self.subscribe(forward)
        try:
            seen = last_id
            for event in self.since(last_id):
                seen = event["id"]
                yield event
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=heartbeat_s)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if event["id"] > seen:
                    seen = event["id"]
                    yield event
                if event["type"] == STOPPING:  # the daemon is shutting down: end the stream cleanly
                    return
        finally:
            unsubscribe()


def sse_format(event: dict | None) -> str:
    """One server-sent-events frame (a comment line for heartbeats)."""
    if event is None:
        return ": keep-alive\n\n"
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event, default=str)}\n\n"


def parse_sse_lines(lines: Iterable[str]) -> Iterator[dict]:
    """Parse `data:` frames from an iterable of text lines into event dicts."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []
