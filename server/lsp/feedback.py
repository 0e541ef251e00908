"""Accepted and rejected suggestions -> the daemon's /api/feedback, else `.penwright/feedback.jsonl` directly.

These records are for later preference training: what was proposed, in what
context, by which adapter, with which lore, and whether the author kept it.
"""

from __future__ import annotations

import json
import logging
import time

from penwright.server.lsp.daemon import STATE_DIR, DaemonError, DaemonUnavailable

log = logging.getLogger(__name__)


async def record_feedback(ls, payload: dict, accepted: bool) -> str:
    """Record one decision; returns where it went ("daemon", "file" or "nowhere")."""
    record = {**payload, "accepted": accepted, "time": round(time.time(), 3), "client": "lsp"}
    if ls.daemon is not None:
        try:
            await ls.daemon.request("POST", "/api/feedback", start=False, json=record)
            return "daemon"
        except DaemonError as err:
            if err.status not in (404, 405):
                log.warning("daemon refused feedback: %s", err.message)
        except DaemonUnavailable:
            pass
    if ls.root is None:
        return "nowhere"
    path = ls.root / STATE_DIR / "feedback.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as err:
        log.warning("cannot write %s: %s", path, err)
        return "nowhere"
    return "file"
