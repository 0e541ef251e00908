"""The daemon's HTTP app: `create_app(services)` wires routers, errors, auth and CORS.

Run on its own (until `penwright serve` composes it with the watcher and jobs):
    python -m penwright.server.app --project PATH [--host 127.0.0.1] [--port 8765]
"""

from __future__ import annotations

import argparse
import importlib
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from penwright.errors import PenwrightError, ServeError
from penwright.server.boundary import Boundary, Policy, is_loopback
from penwright.server.openapi import published_schema
from penwright.server.services.errors import ApiError, api_error, method_not_allowed

log = logging.getLogger(__name__)


def check_bind(settings, host: str | None = None) -> None:
    """Refuse to listen beyond this machine without an API key, however the host was given (file or --host)."""
    host = settings.host if host is None else host
    if not is_loopback(host) and not settings.api_key:
        shown = host or "every interface"
        raise ServeError(
            f"The daemon would listen on {shown}, which other machines can reach, and server.api_key is not set.",
            "Set server.api_key in penwright.yaml (clients send it as a Bearer token), "
            "or bind 127.0.0.1 (the default).",
        )


def create_app(services, routers=(), bound_host: str | None = None) -> FastAPI:
    """The FastAPI app over a `Services` container; `routers` are extra APIRouters (the daemon's).

    `bound_host` is the address the daemon actually listens on (a `--host` flag), when it is not `settings.host`.
    """
    from penwright.server.routers import health, openai
    from penwright.server.services.completion import CompletionService

    check_bind(services.settings, bound_host)
    app = FastAPI(title="Penwright", docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.completions = CompletionService(services)
    _error_handlers(app)
    if services.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=services.settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Penwright-Adapter", "X-Penwright-Lore"],
        )
    app.add_middleware(Boundary, policy=Policy.for_bind(services.settings, bound_host))  # outermost: first to run
    app.include_router(openai.router)
    app.include_router(health.router)
    lore = _optional_router("penwright.server.routers.lore")
    if lore is not None:
        app.include_router(lore)
    for r in routers:
        app.include_router(r)
    app.openapi = lambda: published_schema(app)
    return app


def _optional_router(module: str):
    try:
        return importlib.import_module(module).router
    except ImportError:
        return None


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(validation_error(exc.errors()), request)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return _error(exc, request)

    @app.exception_handler(PenwrightError)
    async def _penwright(request: Request, exc: PenwrightError):  # handled here, so no traceback for a 4xx
        return _error(api_error(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:
            return _error(method_not_allowed(request.method, request.url.path, _allowed(request)), request)
        if exc.status_code == 404 and exc.detail == "Not Found":
            return _error(
                ApiError(
                    404,
                    f"There is no {request.method} {request.url.path} here; /openapi.json lists every route.",
                    "not_found",
                ),
                request,
            )
        return _error(ApiError(exc.status_code, str(exc.detail), {404: "not_found"}.get(exc.status_code)), request)

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception):
        return _error(api_error(exc))


def validation_error(errs: list[dict]) -> ApiError:
    """pydantic's errors as one 400 that names every bad field and what it must be."""
    first = errs[0] if errs else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", first.get("msg"))
        return ApiError(400, f"The request body is not valid JSON: {detail}", "invalid_json")
    errs = _one_per_field(errs)
    first = errs[0] if errs else {}
    msg = "; ".join(f"{'.'.join(_field_path(e.get('loc', ()))) or 'body'}: {_readable(e)}" for e in errs[:10])
    code = "invalid_type" if str(first.get("type", "")).endswith("_type") else "invalid_value"
    return ApiError(400, msg, code, ".".join(_field_path(first.get("loc", ()))) or None)


def _one_per_field(errs: list[dict]) -> list[dict]:
    """A union field fails once per member: keep its most telling error (a bound broken beats a wrong type)."""
    by_field: dict[str, list[dict]] = {}
    for e in errs:
        by_field.setdefault(".".join(_field_path(e.get("loc", ()))[:1]), []).append(e)
    out = []
    for group in by_field.values():
        telling = [e for e in group if not str(e.get("type", "")).endswith("_type")]
        deep = [e for e in group if _depth_past_union(e) > 0]
        if len(group) == 1 or telling:
            out.append((telling or group)[0])
        elif deep:  # a list member or nested field was wrong: name it rather than the whole union
            out.append(max(reversed(deep), key=_depth_past_union))
        else:
            out.append(_union_error(group))
    return out


def _depth_past_union(err: dict) -> int:
    loc = list(err.get("loc", ()))
    tags = [i for i, p in enumerate(loc) if isinstance(p, str) and (p in _TYPE_TAGS or "[" in p)]
    return len(loc) - tags[0] - 1 if tags else 0


def _union_error(group: list[dict]) -> dict:
    """Every member of a union refused the value's type: say which types would do."""
    tags = []
    for e in group:
        tag = next((str(p) for p in e.get("loc", ()) if isinstance(p, str) and (p in _TYPE_TAGS or "[" in p)), None)
        tag = tag and tag.replace("constrained-int", "int").replace("constrained-str", "str")
        if tag and tag not in tags:
            tags.append(tag)
    loc = group[0].get("loc", ())
    cut = next((i for i, p in enumerate(loc) if isinstance(p, str) and (p in _TYPE_TAGS or "[" in p)), len(loc))
    return {
        "type": "union_type",
        "loc": loc[:cut],
        "input": group[0].get("input"),
        "msg": f"should be {' or '.join(tags) or 'another type'}",
    }


def _readable(err: dict) -> str:
    """pydantic's message, with the query or path parameter's name and the value it got."""
    got = err.get("input")
    shown = f" (got {_short(got)})" if not isinstance(got, (dict, list)) and got is not None else ""
    return f"{str(err.get('msg')).removeprefix('Value error, ')}{shown}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed(request: Request) -> list[str]:
    """The methods the requested path does answer (for a 405's `Allow`)."""
    from starlette.routing import Match

    methods = {
        m
        for route in request.app.router.routes
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if route.matches({**request.scope, "method": m})[0] == Match.FULL
    }
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _field_path(loc) -> list[str]:
    """pydantic's error location as the request's field path (without `body`/`query`/`path` and union member tags)."""
    out = []
    for p in loc:
        if p in ("body", "query", "path", "header") and not out:
            continue
        if isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or p.startswith(("function-", "constrained-"))):
            continue
        out.append(str(p))
    return out


def _error(err: ApiError, request: Request | None = None) -> JSONResponse:
    """The OpenAI-shaped error response, logged in one line (never a traceback) when a handler knows the request."""
    if request is not None:  # a server-side condition the app knows (engine down, upstream gone): one warning line
        level = logging.INFO if err.status < 500 else logging.WARNING
        message = " ".join(err.message.split())[:300]
        log.log(level, "%s %s: %d %s", request.method, request.url.path, err.status, message)
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers or None)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from penwright.server.context import build_services
    from penwright.workspace import open_workspace

    parser = argparse.ArgumentParser(
        prog="python -m penwright.server.app", description="Serve a project's model over HTTP."
    )
    parser.add_argument("--project", "-p", default=None, help="project folder (default: this one or above)")
    parser.add_argument("--host", default=None, help="override server.host")
    parser.add_argument("--port", type=int, default=None, help="override server.port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workspace = open_workspace(args.project)
    settings = workspace.settings.server.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    check_bind(settings)
    services = build_services(workspace, settings=settings)
    try:
        uvicorn.run(
            create_app(services, bound_host=settings.host), host=settings.host, port=settings.port, log_level="warning"
        )
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
