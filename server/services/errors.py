"""Errors as the OpenAI API shapes them: `{"error": {"message", "type", "param", "code"}}` with a status."""

from __future__ import annotations

import logging

from penwright.errors import PenwrightError, RegistryError, ServeError

log = logging.getLogger(__name__)

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 502: "upstream_error",
         503: "server_error", 504: "timeout_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 type_: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type_ or TYPES.get(status, "invalid_request_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def api_error(err: BaseException) -> ApiError:
    """Map anything raised while serving to an ApiError (unexpected ones become a logged 500)."""
    if isinstance(err, ApiError):
        return err
    status = getattr(err, "status", None)
    if isinstance(status, int) and isinstance(err, PenwrightError):  # engine RequestError
        return ApiError(status, str(err), getattr(err, "code", None), getattr(err, "param", None))
    if isinstance(err, RegistryError):
        return ApiError(404, str(err), "model_not_found", "model")
    if isinstance(err, ServeError):
        return ApiError(503, str(err), "engine_unavailable")
    if isinstance(err, PenwrightError):
        return ApiError(400, str(err), "invalid_request")
    if isinstance(err, TimeoutError):
        return ApiError(504, "the model did not answer in time", "timeout")
    log.error("unexpected error while serving", exc_info=err)
    return ApiError(500, f"internal error: {type(err).__name__}: {err}", "internal_error")
