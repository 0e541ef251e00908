"""Errors as the OpenAI API shapes them: `{"error": {"message", "type", "param", "code"}}` with a status.

Every error the HTTP side answers with is built here: `ApiError` (and the boundary's named ones below)
carries its status, says what was wrong and what to do. `api_error` maps anything else raised while serving.
"""

from __future__ import annotations

import logging

from penwright.errors import PenwrightError

log = logging.getLogger(__name__)

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    421: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type_ or TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ---- the HTTP boundary's refusals (server/boundary.py) ----------------------------------------------------------


def host_not_allowed(host: str, allowed: list[str]) -> ApiError:
    return ApiError(
        421,
        f"This daemon does not answer to the host name {host!r}. It answers to "
        f"{', '.join(allowed)}: open it by one of those names (a page that reaches it by another "
        "name is refused, so web pages cannot read your book through DNS rebinding).",
        "host_not_allowed",
    )


def client_not_local(client: str) -> ApiError:
    return ApiError(
        403,
        f"Requests from {client} are refused: without server.api_key this daemon answers only "
        "this machine. Set server.api_key in penwright.yaml to allow other machines.",
        "not_loopback",
    )


def origin_not_allowed(origin: str) -> ApiError:
    return ApiError(
        403,
        f"A web page from {origin} may not change anything here (start training, promote, "
        "roll back...). Use the dashboard at this daemon's own address, or add the origin to "
        "server.cors_origins in penwright.yaml if you trust it.",
        "origin_not_allowed",
    )


def not_json(content_type: str) -> ApiError:
    shown = content_type or "none"
    return ApiError(
        415,
        f"This request must send a JSON body with `Content-Type: application/json` (got {shown}).",
        "unsupported_media_type",
        headers={"Accept": "application/json"},
    )


def not_utf8(offset: int) -> ApiError:
    return ApiError(
        400, f"The request body is not UTF-8 (byte {offset}): JSON bodies must be UTF-8 text.", "invalid_json"
    )


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than this route's limit of {limit:,} bytes. Send less "
        "text (the model only sees its context window), or raise server.max_body_bytes.",
        "request_too_large",
    )


def bad_key() -> ApiError:
    return ApiError(
        401,
        "Missing or wrong API key: send `Authorization: Bearer <server.api_key>`.",
        "invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def method_not_allowed(method: str, path: str, allow: list[str]) -> ApiError:
    return ApiError(
        405,
        f"{method} is not allowed on {path}; use {' or '.join(allow)}.",
        "method_not_allowed",
        headers={"Allow": ", ".join(allow)},
    )


def api_error(err: BaseException) -> ApiError:
    """Map anything raised while serving to an ApiError (unexpected ones become a logged 500)."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, PenwrightError):  # each carries its own status and code (penwright/errors.py)
        return ApiError(err.status, str(err), err.code, err.param)
    if isinstance(err, TimeoutError):
        return ApiError(504, "the model did not answer in time", "timeout")
    log.error("unexpected error while serving", exc_info=err)
    return ApiError(500, f"internal error: {type(err).__name__}: {err}", "internal_error")
