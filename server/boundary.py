"""The daemon's HTTP boundary: one guard in front of every route, so no route needs its own.

In order, for every HTTP request:

1. the peer: without `server.api_key`, only this machine (loopback) is answered, however the daemon was bound;
2. `Host`: must name the address the daemon was bound to (or localhost), so a DNS-rebinding page that reaches
   127.0.0.1 under its own name is refused;
3. the key: `Authorization: Bearer <server.api_key>` when one is set (not for `/health` and the dashboard's
   static page and assets, which hold no data; the page asks for the key);
4. state-changing methods (POST, PUT, PATCH, DELETE): a body must be `application/json`, and a browser's
   `Origin` / `Sec-Fetch-Site` must be this daemon's own origin or one listed in `server.cors_origins`;
5. the body: at most `server.max_body_bytes` (the `/v1` and lore routes) or `SMALL_BODY_BYTES` (the other
   `/api` routes), read here before any route sees it, so an oversized body is refused with 413 at once.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from penwright.server.services import errors
from penwright.server.services.errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/dashboard/",)
LARGE_BODY_PREFIXES = ("/v1/", "/api/lore/")
SMALL_BODY_BYTES = 64 * 1024
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::", "*")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True)
class Policy:
    """What the boundary allows; built once from the server settings and the address actually bound."""

    api_key: str | None
    hosts: frozenset[str] | None  # None: any Host (bound to every interface, with a key)
    origins: frozenset[str]
    max_body_bytes: int

    @classmethod
    def for_bind(cls, settings, bound_host: str | None = None) -> Policy:
        host = (bound_host if bound_host is not None else settings.host).strip("[]").lower()
        names = None if (host in WILDCARDS and settings.api_key) else frozenset({*LOCAL_NAMES, host} - {*WILDCARDS})
        return cls(
            settings.api_key or None,
            names,
            frozenset(o.rstrip("/") for o in settings.cors_origins),
            settings.max_body_bytes,
        )

    def body_limit(self, path: str) -> int:
        return (
            self.max_body_bytes if path.startswith(LARGE_BODY_PREFIXES) else min(SMALL_BODY_BYTES, self.max_body_bytes)
        )


def host_name(host_header: str) -> str:
    """`Host` without its port: `[::1]:8765` -> `::1`, `Example.org:80` -> `example.org`."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def check_peer(scope, policy: Policy) -> ApiError | None:
    client = scope.get("client")
    if policy.api_key or not client or is_loopback(str(client[0])):
        return None
    return errors.client_not_local(str(client[0]))


def check_host(headers: Headers, policy: Policy) -> ApiError | None:
    if policy.hosts is None:
        return None
    name = host_name(headers.get("host", ""))
    if name in policy.hosts or (name.endswith(".localhost") and "localhost" in policy.hosts):
        return None
    return errors.host_not_allowed(name or "(none)", sorted(policy.hosts))


def check_key(scope, headers: Headers, policy: Policy) -> ApiError | None:
    path = scope.get("path", "")
    if not policy.api_key or scope["method"] == "OPTIONS":
        return None
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    given = headers.get("authorization", "").encode()
    return None if hmac.compare_digest(given, f"Bearer {policy.api_key}".encode()) else errors.bad_key()


def check_origin(headers: Headers, policy: Policy) -> ApiError | None:
    """A browser says where a request comes from; only this daemon's own pages (and listed origins) may change state."""
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site", "").lower()
    if origin is None:
        return errors.origin_not_allowed(f"another site ({site})") if site in ("cross-site", "same-site") else None
    origin = origin.rstrip("/")
    if origin in policy.origins or origin == f"http://{headers.get('host', '')}".rstrip("/"):
        return None
    return errors.origin_not_allowed(origin)


def check_content_type(headers: Headers, body: bytes) -> ApiError | None:
    ctype = headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if not body and not ctype:
        return None
    if media != "application/json":
        return errors.not_json(ctype)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        return errors.not_utf8(err.start)
    return None


def declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


class Boundary:
    """Pure ASGI middleware: the checks above, then the route with the body it already read (at most the limit)."""

    def __init__(self, app, policy: Policy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        err = (
            check_peer(scope, self.policy) or check_host(headers, self.policy) or check_key(scope, headers, self.policy)
        )
        if err is None and scope["method"] not in SAFE_METHODS:
            err = check_origin(headers, self.policy)
            if err is None:
                body, err = await self._read_body(scope, headers, receive)
                err = err or check_content_type(headers, body)
                if err is None:
                    return await self.app(scope, _replay(body, receive), send)
        if err is not None:
            return await refuse(err, scope, receive, send)
        return await self.app(scope, receive, send)

    async def _read_body(self, scope, headers: Headers, receive) -> tuple[bytes, ApiError | None]:
        limit = self.policy.body_limit(scope.get("path", ""))
        size = declared_length(headers)
        if size is not None and size > limit:
            return b"", errors.too_large(limit)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", ApiError(
                    400, "The client closed the connection before sending its whole body.", "client_disconnected"
                )
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                return b"", errors.too_large(limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks), None


def _replay(body: bytes, receive):
    """The body already read, then the connection's own messages (a streaming answer waits on its disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def refuse(err: ApiError, scope, receive, send) -> None:
    headers = {**err.headers, "Connection": "close"} if err.status == 413 else err.headers
    await JSONResponse(err.body(), status_code=err.status, headers=headers)(scope, receive, send)
