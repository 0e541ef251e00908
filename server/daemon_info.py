"""Where a project's daemon listens: `.penwright/daemon.json`, trusted only while the daemon's lock is held.

Standard library only, so the language server can read it without importing the daemon.
"""

from __future__ import annotations

import json
from pathlib import Path

STATE_DIR = ".penwright"
LOCK_FILE = "daemon.lock"
INFO_FILE = "daemon.json"


def read_daemon_info(project_root: Path) -> dict | None:
    """The daemon's `daemon.json`, or None when none is running (a file left by a dead daemon is ignored)."""
    state = Path(project_root) / STATE_DIR
    try:
        info = json.loads((state / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    return info if _lock_held(state / LOCK_FILE) else None


def daemon_url(info: dict | None) -> str | None:
    """Base URL from a `daemon.json` dict (`url`, else `host` + `port`), or None when it is not sane."""
    if not isinstance(info, dict):
        return None
    if isinstance(info.get("url"), str):
        return info["url"].rstrip("/")
    host, port = info.get("host") or "127.0.0.1", info.get("port")
    if not isinstance(port, int):
        return None
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{port}"


def _lock_held(path: Path) -> bool:
    """True when some process holds the `flock` on `daemon.lock` (the kernel drops it when that process dies)."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: trust the file
        return True
    try:
        with open(path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # we got it: nobody holds it
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return False
    except BlockingIOError:
        return True
    except OSError:  # cannot tell (read-only folder...): trust the file
        return True
