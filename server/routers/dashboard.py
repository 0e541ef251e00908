"""The dashboard at `/`: static files from server/static (no build step, no CDN) and its state endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from penwright.server.services.dashboard import dashboard_state

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def index():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/dashboard/{name}", include_in_schema=False)
def asset(name: str):
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file():
        from fastapi import HTTPException

        raise HTTPException(404, "no such file")
    return FileResponse(path)


@router.get("/api/dashboard")
def state(request: Request):
    """Everything the page shows, in one call, as of `last_event_id` (server/services/dashboard.py)."""
    return dashboard_state(request.app.state.daemon)
