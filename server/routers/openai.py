"""OpenAI-compatible routes: thin HTTP translation around CompletionService."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from penwright.server.metrics import metered_route_class
from penwright.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from penwright.server.routers import metrics as metrics_routes
from penwright.server.services import models
from penwright.server.services.continue_prefix import chapter_of, split_continue_prompt
from penwright.server.services.errors import ApiError

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"], route_class=metered_route_class())
router.include_router(metrics_routes.router)  # GET /metrics and /version (vLLM serves them beside the API too)


def _log_unknown(body, path: str) -> None:
    extra = sorted((body.model_extra or {}).keys())
    if extra:
        log.info("%s: ignoring unknown request fields %s", path, ", ".join(extra))


def _cards(request: Request):
    services = request.app.state.services
    if getattr(request.app.state, "base_created", None) is None:
        request.app.state.base_created = models.base_created(services)
    return models.model_list(
        services.model_name,
        services.registry,
        services.live_adapter,
        request.app.state.completions.context_length,
        request.app.state.base_created,
    )


def _check(request: Request, body) -> None:
    """Refuse what the generator cannot honour (the local engine says; in proxy mode the upstream decides)."""
    request.app.state.services.generator.check_supported(body)


@router.get("/v1/models")
async def list_models(request: Request):
    return _cards(request).model_dump()


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request):
    return models.model_card(model_id, _cards(request)).model_dump()


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    _log_unknown(body, "/v1/completions")
    _check(request, body)
    if isinstance(body.prompt, str):  # Continue's autocomplete puts file paths and snippets before the prose
        found = split_continue_prompt(body.prompt)
        body.prompt = found.text
        if body.penwright.chapter is None:  # Continue sends no chapter: the header's file name tells it
            body.penwright.chapter = chapter_of(found)
    return await _serve(request, body, await request.app.state.completions.prepare_completion(body))


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    _log_unknown(body, "/v1/chat/completions")
    _check(request, body)
    return await _serve(request, body, await request.app.state.completions.prepare_chat(body, request.is_disconnected))


async def _serve(request: Request, body, prepared):
    services = request.app.state.services
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await services.generator.respond(prepared, services, request, body, include_usage)


def _engine(request: Request):
    return request.app.state.services.generator.tokenizer()


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request):
    """vLLM's shape. Chat messages are rendered with the model's chat template (generation prompt included)."""
    engine = _engine(request)
    if (body.prompt is None) == (body.messages is None):
        raise ApiError(400, "Send either `prompt` or `messages`.", "invalid_value", "prompt")
    text = (
        body.prompt
        if body.prompt is not None
        else engine.chat_prompt([{"role": m.role, "content": m.text()} for m in body.messages])
    )
    ids = await run_in_threadpool(engine.encode, text)
    strs = [engine.decode([i]) for i in ids] if body.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=engine.context_length, tokens=ids, token_strs=strs)


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request):
    engine = _engine(request)
    return DetokenizeResponse(prompt=await run_in_threadpool(engine.decode, body.tokens))
