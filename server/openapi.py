"""The OpenAPI schema the daemon publishes at /openapi.json, saying what it really answers.

FastAPI's generated schema says 422 for invalid input (this app answers 400 in the OpenAI error shape) and
nothing of the boundary's refusals (server/boundary.py) or of event streams. This adds them, once, to every
operation, so a client (or schemathesis) can rely on every status and body the daemon sends.
"""

from __future__ import annotations

from fastapi.openapi.utils import get_openapi

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
BOUNDARY = {
    "400": "The request is invalid: the message names each bad field and what it must be.",
    "401": "server.api_key is set and the request did not send it as a Bearer token.",
    "403": "Refused: a cross-origin page changing state, or another machine without server.api_key.",
    "413": "The body is larger than the route's limit (the message says the limit).",
    "415": "A state-changing request whose body is not application/json.",
    "421": "The Host header does not name this daemon (DNS rebinding guard).",
}
SERVING = {
    "404": "No such resource (model, job, adapter version, lore entry).",
    "409": "The operation conflicts with the current state (e.g. the version is already live).",
    "429": "The engine's queue is full; retry later.",
    "503": "The engine (or the upstream server) is not available.",
    "504": "The model did not answer in time.",
}
STREAMED = {"/v1/completions", "/v1/chat/completions"}
EVENT_STREAMS = {"/api/events"}
PLAIN_TEXT = {"/metrics"}  # Prometheus' text format
SSE = {
    "type": "object",
    "description": "One server-sent event: `data` is a JSON object as text.",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
}


def published_schema(app) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        _add_error_schema(schema)
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                _fix_operation(path, op)
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema


def _add_error_schema(schema: dict) -> None:
    detail = {
        "type": "object",
        "required": ["message", "type"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    }
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = {"type": "object", "required": ["error"], "properties": {"error": detail}}


def _fix_operation(path: str, op: dict) -> None:
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    for status, text in {**BOUNDARY, **SERVING}.items():
        responses.setdefault(status, {"description": text, "content": {"application/json": {"schema": ERROR_REF}}})
    ok = responses.get("200")
    if ok is None:
        return
    if path in STREAMED:
        ok["description"] = "The completion as JSON, or with `stream: true` as server-sent events."
        ok.setdefault("content", {})["text/event-stream"] = {"schema": SSE}
    elif path in EVENT_STREAMS:
        ok["description"] = "Server-sent events (one `data:` JSON object per event)."
        ok["content"] = {"text/event-stream": {"schema": SSE}}
    elif path in PLAIN_TEXT:
        ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
