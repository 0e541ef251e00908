"""`GET /health` (liveness, no auth) and `GET /api/status` (what is served, on what, how busy)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from penwright.server.services.models import served_id

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request):
    services = request.app.state.services
    ok = services.upstream is not None or (services.engine is not None and services.engine.running)
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)


@router.get("/api/status")
async def status(request: Request):
    services = request.app.state.services
    out = {
        "model_name": services.model_name,
        "adapter": served_id(services.model_name, services.live_adapter),
        "lore": services.lore is not None,
        "mode": "proxy" if services.upstream is not None else "local",
    }
    if services.engine is not None:
        out["engine"] = services.engine.status()
        out["backend"] = out["engine"].get("backend")
        out["queue_depth"] = out["engine"]["queue_depth"]
    if services.upstream is not None:
        out["upstream"] = services.upstream.status()
    return out
