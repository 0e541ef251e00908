"""HTTP client of the project's daemon (httpx, async): find it, start it if none answers, call its API.

The daemon is the one owner of the model, the lore index and the training
queue; every editor's language server is a client of it. Where it listens:
the `daemonUrl` setting, else `.penwright/daemon.json` (written by the daemon),
else penwright.yaml's `server.host`/`server.port`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from penwright.server.daemon_info import STATE_DIR, daemon_url, read_daemon_info

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


class DaemonUnavailable(Exception):
    """No daemon answers for this project (and none could be started). The message says what to do."""


class DaemonError(Exception):
    """The daemon answered with an error; `message` is its OpenAI-shaped error message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"daemon answered {status}: {message}")
        self.status = status
        self.message = message


def project_server(root: Path) -> tuple[str | None, str | None]:
    """(base URL, api key) from penwright.yaml, or (None, None) if it cannot be read."""
    try:
        from penwright.project import load_project  # pydantic only: cheap

        server = load_project(root).settings.server
    except Exception as err:  # a broken penwright.yaml is reported by the daemon, not here
        log.debug("cannot read %s/penwright.yaml: %s", root, err)
        return None, None
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    return f"http://{host}:{server.port}", server.api_key


def read_daemon_json(root: Path) -> str | None:
    """Base URL of the project's running daemon from `.penwright/daemon.json` (None if none holds the lock)."""
    return daemon_url(read_daemon_info(root))


class DaemonClient:
    """One per language server. Methods raise DaemonUnavailable or DaemonError, never httpx errors."""

    def __init__(self, root: Path | None, url: str = "", auto_start: bool = True, timeout: float = 60.0):
        self.root = root
        self.fixed_url = url.rstrip("/")
        self.auto_start = auto_start
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None  # made on first use: httpx is imported after `initialize`
        self._start_lock = asyncio.Lock()
        self._started: subprocess.Popen | None = None
        self.url: str | None = None
        self.api_key: str | None = None

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=2.0), trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def candidates(self) -> list[str]:
        if self.fixed_url:
            return [self.fixed_url]
        urls: list[str] = []
        if self.root is not None:
            if (u := read_daemon_json(self.root)) is not None:
                urls.append(u)
            u, key = project_server(self.root)
            self.api_key = key
            if u is not None and u not in urls:
                urls.append(u)
        return urls

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _probe(self, url: str) -> int | None:
        """HTTP status of /health (200 ready, 503 still loading its model), None if nothing answers."""
        import httpx

        try:
            r = await self._http.get(f"{url}/health", headers=self._headers(), timeout=2.0)
        except httpx.HTTPError:
            return None
        return r.status_code

    async def _healthy(self, url: str) -> bool:
        return await self._probe(url) == 200

    async def locate(self, start: bool = True) -> str:
        """A base URL that answers /health, starting the daemon when allowed (and `start`) and needed."""
        if self.url:  # known good; a failed request clears it (see `request`)
            return self.url
        loading = None
        for url in self.candidates():
            code = await self._probe(url)
            if code == 200:
                self.url = url
                return url
            if code is not None and loading is None:
                loading = url
        if loading is not None:  # a daemon is there, still loading its model: wait for it, never start a second
            return await self._wait_ready(loading)
        if not (start and self.auto_start and self.root is not None and not self.fixed_url):
            raise DaemonUnavailable(self._down_message())
        async with self._start_lock:
            return await self._start_and_wait()

    def _down_message(self) -> str:
        where = self.fixed_url or ", ".join(self.candidates()) or "nowhere (no project found)"
        project = f" --project {self.root}" if self.root else ""
        return f"The Penwright daemon is not answering ({where}). Start it with `penwright serve{project}`."

    async def _wait_ready(self, url: str, wait_s: float = 90.0) -> str:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            code = await self._probe(url)
            if code == 200:
                self.url = url
                return url
            if code is None:
                break
            await asyncio.sleep(0.25)
        raise DaemonUnavailable(f"The Penwright daemon at {url} is not ready (still loading, or stopped).")

    async def _start_and_wait(self, wait_s: float = 90.0) -> str:
        for url in self.candidates():  # someone else may have started it while we waited for the lock
            if await self._healthy(url):
                self.url = url
                return url
        if self._started is None or self._started.poll() is not None:
            self._started = start_daemon(self.root)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for url in self.candidates():
                if await self._healthy(url):
                    self.url = url
                    return url
            if self._started.poll() is not None:
                log_file = self.root / STATE_DIR / "logs" / "daemon-from-lsp.log"
                raise DaemonUnavailable(
                    f"`penwright serve` exited with code {self._started.returncode}; see {log_file}."
                )
            await asyncio.sleep(0.25)
        raise DaemonUnavailable(f"The Penwright daemon did not answer within {wait_s:.0f} s of starting it.")

    async def request(self, method: str, path: str, start: bool = True, **kwargs: Any) -> Any:
        """Call the daemon; JSON result. Retries once after re-locating if the connection fails (restart)."""
        import httpx

        for attempt in (0, 1):
            url = await self.locate(start)
            try:
                r = await self._http.request(method, f"{url}{path}", headers=self._headers(), **kwargs)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as err:
                self.url = None
                if attempt:
                    raise DaemonUnavailable(f"Lost the connection to the daemon at {url}: {err}") from err
                continue
            except httpx.TimeoutException as err:
                raise DaemonUnavailable(f"The daemon at {url} did not answer {path} in time.") from err
            return _decode(r)
        raise AssertionError("unreachable")

    async def events(self, since: int = 0) -> AsyncIterator[dict]:
        """Server-sent events from /api/events (one connection; returns when it closes). Never starts a daemon."""
        import httpx

        url = await self.locate(start=False)
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if since:
            headers["Last-Event-ID"] = str(since)
        timeout = httpx.Timeout(None, connect=2.0)
        async with self._http.stream("GET", f"{url}/api/events", headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                raise DaemonError(r.status_code, "events stream refused")
            data: list[str] = []
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    try:
                        event = json.loads("\n".join(data))
                    except ValueError:
                        event = None
                    data = []
                    if isinstance(event, dict):
                        yield event


def _decode(r: httpx.Response) -> Any:
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400:
        message = r.text[:300]
        if isinstance(body, dict):
            err = body.get("error") if isinstance(body.get("error"), dict) else None
            message = (err or {}).get("message") or body.get("detail") or message
        raise DaemonError(r.status_code, str(message))
    return body


def start_daemon(root: Path) -> subprocess.Popen:
    """`penwright serve --project ROOT` as a detached process that outlives this server."""
    logs = root / STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = open(logs / "daemon-from-lsp.log", "ab")
    cmd = [sys.executable, "-m", "penwright", "serve", "--project", str(root)]
    log.info("starting the daemon: %s", " ".join(cmd))
    try:
        return subprocess.Popen(
            cmd,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        out.close()
