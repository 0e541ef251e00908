"""`GET /api/events`: the daemon's events as server-sent events (types in docs/architecture.md).

Reconnecting clients send `Last-Event-ID` (or `?since=N`) and get what they missed from the bus's history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from penwright.server.events import sse_format

router = APIRouter(prefix="/api", tags=["events"])
MAX_ID = 2**63 - 1


@router.get("/events")
async def events(request: Request, since: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None):
    bus = request.app.state.daemon.events
    header = request.headers.get("last-event-id")
    last = since if since is not None else (int(header) if header and header.isdigit() else bus.last_id)

    async def frames():
        yield "retry: 2000\n\n"
        async for event in bus.stream(last_id=last):
            if await request.is_disconnected():
                break
            yield sse_format(event)

    return StreamingResponse(
        frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get("/events/history")
def history(request: Request, since: Annotated[int, Query(ge=0, le=MAX_ID)] = 0):
    """The same events as JSON (for scripts and tests that do not speak SSE)."""
    return {"events": request.app.state.daemon.events.since(since)}
