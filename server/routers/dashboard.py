"""The dashboard at `/`: static files from server/static (no build step, no CDN) and its state endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

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
    """Everything the page shows, in one call: status, jobs, adapters."""
    daemon = request.app.state.daemon
    live = daemon.registry.live()
    return {
        "status": daemon.status(),
        "jobs": [j.to_dict() for j in daemon.jobs.list(20)],
        "adapters": [v.to_dict() for v in daemon.registry.list()][-20:],
        "live": live.to_dict() if live else None,
    }
