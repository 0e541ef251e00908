"""Helpers for tests (importable as `pwtest` from any test module)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "novel"
# the system Chromium the browser tests drive through Playwright (PENWRIGHT_CHROMIUM overrides)
CHROMIUM = (
    os.environ.get("PENWRIGHT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
)


def tree_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`: to prove Penwright changed nothing there."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def example_texts(folder: Path = EXAMPLE / "manuscript") -> list[str]:
    """The example novel's chapters (or any folder's *.md), in file-name order."""
    return [p.read_text(encoding="utf-8") for p in sorted(Path(folder).glob("*.md"))]


def copy_example(dest: Path, extra_settings: str = "") -> Path:
    """A private copy of examples/novel (no state from earlier runs), `extra_settings` appended to penwright.yaml."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".penwright"))
    if extra_settings:
        settings = dest / "penwright.yaml"
        settings.write_text(settings.read_text(encoding="utf-8") + extra_settings, encoding="utf-8")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Until `url` answers 200; fails the test at once if `proc` exits, with the tail of its `log`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{' '.join(map(str, proc.args))} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout:.0f}s:\n{_tail(log)}")


def stop_process(proc: subprocess.Popen, grace: float = 60) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_daemon(root: Path, log: Path) -> subprocess.Popen:
    """`penwright serve --project ROOT` as a subprocess, output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "penwright", "serve", "--project", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
        )


@contextlib.contextmanager
def serve_project(root: Path, url: str, log: Path, timeout: float = 240):
    """A real daemon for `root` (its penwright.yaml names the port of `url`), healthy on entry, stopped on exit."""
    proc = start_daemon(root, log)
    try:
        wait_http(f"{url}/health", timeout, proc, log)
        yield proc
    finally:
        stop_process(proc)
