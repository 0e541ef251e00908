"""OpenAI-compatible routes: thin HTTP translation around CompletionService."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request

from penwright.server.protocol import ChatCompletionRequest, CompletionRequest
from penwright.server.services import models
from penwright.server.services.responses import respond

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])


def _log_unknown(body, path: str) -> None:
    extra = sorted((body.model_extra or {}).keys())
    if extra:
        log.info("%s: ignoring unknown request fields %s", path, ", ".join(extra))


@router.get("/v1/models")
async def list_models(request: Request):
    services = request.app.state.services
    return models.model_list(services.model_name, services.registry, services.live_adapter).model_dump()


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    _log_unknown(body, "/v1/completions")
    return await _serve(request, body, await request.app.state.completions.prepare_completion(body))


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    _log_unknown(body, "/v1/chat/completions")
    return await _serve(request, body, await request.app.state.completions.prepare_chat(body))


async def _serve(request: Request, body, prepared):
    services = request.app.state.services
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if services.engine is None:
        return await services.upstream.respond(prepared, request, body.stream, services.model_name)
    return await respond(prepared, services, request, body.stream, include_usage)
