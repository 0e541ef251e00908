"""The daemon's HTTP app: `create_app(services)` wires routers, errors, auth and CORS.

Run on its own (until `penwright serve` composes it with the watcher and jobs):
    python -m penwright.server.app --project PATH [--host 127.0.0.1] [--port 8765]
"""

from __future__ import annotations

import argparse
import hmac
import importlib
import ipaddress
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from penwright.errors import ServeError
from penwright.server.services.errors import ApiError, api_error

log = logging.getLogger(__name__)
PUBLIC_PATHS = {"/health"}


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(settings.host) and not settings.api_key:
        raise ServeError(f"server.host is {settings.host}, which other machines can reach, and server.api_key is not set.",
                         "Set server.api_key in penwright.yaml (clients send it as a Bearer token), or bind 127.0.0.1.")


def create_app(services, routers=()) -> FastAPI:
    """The FastAPI app over a `Services` container; `routers` are extra APIRouters (the daemon's)."""
    from penwright.server.routers import health, openai
    from penwright.server.services.completion import CompletionService

    check_bind(services.settings)
    app = FastAPI(title="Penwright", docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.completions = CompletionService(services)
    _error_handlers(app)
    _auth(app, services.settings.api_key)
    if services.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=services.settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Penwright-Adapter", "X-Penwright-Lore"])
    app.include_router(openai.router)
    app.include_router(health.router)
    lore = _optional_router("penwright.server.routers.lore")
    if lore is not None:
        app.include_router(lore)
    for r in routers:
        app.include_router(r)
    return app


def _optional_router(module: str):
    try:
        return importlib.import_module(module).router
    except ImportError:
        return None


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = _field_path(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            msg, code = f"The request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", "invalid_json"
        else:
            msg = "; ".join(f"{'.'.join(_field_path(e.get('loc', ()))) or 'body'}: {e.get('msg')}" for e in errs[:10])
            code = "invalid_type" if "type" in str(first.get("type")) else "invalid_value"
        return _error(ApiError(400, msg, code, ".".join(loc) or None))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error(ApiError(exc.status_code, str(exc.detail), code))

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception):
        return _error(api_error(exc))


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _field_path(loc) -> list[str]:
    """pydantic's error location as the request's field path (without `body` and union member tags)."""
    out = []
    for p in loc:
        if p == "body" and not out:
            continue
        if isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or p.startswith("function-")):
            break
        out.append(str(p))
    return out


def _error(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


def _auth(app: FastAPI, api_key: str | None) -> None:
    if not api_key:
        return
    expected = f"Bearer {api_key}".encode()

    @app.middleware("http")
    async def _bearer(request: Request, call_next):
        if request.url.path in PUBLIC_PATHS or request.method == "OPTIONS":
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(ApiError(401, "Missing or wrong API key: send `Authorization: Bearer <server.api_key>`.",
                                   "invalid_api_key"))
        return await call_next(request)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from penwright.project import load_project
    from penwright.server.context import build_services

    parser = argparse.ArgumentParser(prog="python -m penwright.server.app", description="Serve a project's model over HTTP.")
    parser.add_argument("--project", "-p", default=None, help="project folder (default: this one or above)")
    parser.add_argument("--host", default=None, help="override server.host")
    parser.add_argument("--port", type=int, default=None, help="override server.port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    project = load_project(args.project)
    settings = project.settings.server.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
    check_bind(settings)
    services = build_services(project, settings=settings)
    try:
        uvicorn.run(create_app(services), host=settings.host, port=settings.port, log_level="warning")
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except ServeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
