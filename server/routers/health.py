"""`GET /health` (liveness, no auth) and `GET /api/status` (what is served, on what, how busy)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from penwright.server.services.models import served_id

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request):
    ok = request.app.state.services.generator.running
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)


@router.get("/api/status")
async def status(request: Request):
    services = request.app.state.services
    out = {
        "model_name": services.model_name,
        "adapter": served_id(services.model_name, services.live_adapter),
        "lore": services.lore is not None,
    }
    return {**out, **services.generator.status()}
