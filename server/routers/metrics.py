"""`GET /metrics` (Prometheus text format) and `GET /version`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(request: Request):
    from penwright.server.metrics import metrics_of

    body, content_type = metrics_of(request.app).render()
    return Response(body, media_type=content_type)


@router.get("/version")
async def version():
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return {"version": dist_version("penwright")}
    except PackageNotFoundError:
        return {"version": "unknown"}
