"""`workspace/executeCommand`: retrain, cancel, status, rollback, select adapter, accept tracking.

Every command answers `{"ok": bool, "message": str, ...}`; a failure is also
shown to the author. Wrong arguments give a clear message, never a crash.
"""

from __future__ import annotations

import logging
import re

from lsprotocol import types

from penwright.server.lsp.daemon import DaemonError, DaemonUnavailable
from penwright.server.lsp.feedback import record_feedback

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running", "started")


class BadArguments(Exception):
    pass


def register(ls) -> None:
    for name, fn in COMMANDS.items():
        ls.command(name)(_guarded(name, fn))


def _guarded(name, fn):
    async def handler(ls, *args):
        try:
            result = await fn(ls, *args)
        except BadArguments as err:
            return _fail(ls, f"{name}: {err}")
        except DaemonUnavailable as err:
            return _fail(ls, str(err))
        except DaemonError as err:
            return _fail(ls, f"{name}: the daemon said: {err.message}")
        if result.get("message") and not result.get("quiet"):
            ls.tell(result["message"])
        result.pop("quiet", None)
        return {"ok": True, **result}

    handler.__name__ = name.replace(".", "_")
    return handler


def _fail(ls, message: str) -> dict:
    ls.tell(message, types.MessageType.Error)
    return {"ok": False, "message": message}


def _no_args(args: tuple) -> None:
    if args:
        raise BadArguments(f"expected no arguments, got {len(args)}")


def _one_optional(args: tuple, what: str):
    if len(args) > 1:
        raise BadArguments(f"expected at most one argument ({what}), got {len(args)}")
    value = args[0] if args else None
    if isinstance(value, dict):  # some clients wrap arguments in an object
        value = next(iter(value.values()), None) if len(value) == 1 else value
    return value


async def retrain_now(ls, *args) -> dict:
    _no_args(args)
    result = await ls.daemon.request("POST", "/api/train", json={})
    job = result.get("job", result) if isinstance(result, dict) else {}
    job_id = job.get("id") if isinstance(job, dict) else None
    return {
        "job": job,
        "message": f"Penwright: training queued (job {job_id})." if job_id else "Penwright: training queued.",
    }


async def cancel_training(ls, *args) -> dict:
    given = _one_optional(args, "a job id")
    if given is not None and not (isinstance(given, int) or (isinstance(given, str) and given.isdigit())):
        raise BadArguments(f"the job id must be a number, got {given!r}")
    if given is not None:
        ids = [int(given)]
    else:
        jobs = await ls.daemon.request("GET", "/api/jobs")
        jobs = jobs.get("jobs", []) if isinstance(jobs, dict) else jobs or []
        ids = [j["id"] for j in jobs if isinstance(j, dict) and j.get("status") in ACTIVE]
    if not ids:
        return {"cancelled": [], "message": "Penwright: no training is running or queued."}
    for job_id in ids:
        await ls.daemon.request("POST", f"/api/jobs/{job_id}/cancel")
    return {"cancelled": ids, "message": f"Penwright: cancelled job {', '.join(map(str, ids))}."}


async def status(ls, *args) -> dict:
    _no_args(args)
    st = await ls.daemon.request("GET", "/api/status")
    st = st if isinstance(st, dict) else {"status": st}
    jobs = await ls.daemon.request("GET", "/api/jobs", params={"limit": 5})
    running = (
        [j for j in jobs.get("jobs", []) if isinstance(j, dict) and j.get("status") in ACTIVE]
        if isinstance(jobs, dict)
        else []
    )
    st["running_job"] = next((j for j in running if j.get("status") == "running"), running[0] if running else None)
    return {
        "status": st,
        "model": ls.settings.model,
        "project": str(ls.root) if ls.root else None,
        "daemon": ls.daemon.url,
        "message": summary(st),
        "quiet": True,
    }


def summary(st: dict) -> str:
    live = st.get("adapter") or st.get("live")
    if isinstance(live, dict):
        live = live.get("name") or (f"v{live['version']}" if "version" in live else None)
    job = st.get("running_job")
    parts = [f"serving {live}" if live else "no adapter yet (base model)"]
    if job is not None:
        if isinstance(job, dict):
            steps = f", step {job.get('step')}/{job.get('total')}" if job.get("total") else ""
            parts.append(f"training job {job.get('id')} {job.get('status')}{steps}")
        else:
            parts.append(f"training job {job} running")
    return "Penwright: " + ", ".join(parts)


def _version(value) -> int:
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"(?:penwright@)?v?(\d+)", str(value).strip()) if isinstance(value, (str, int)) else None
    if not m or int(m.group(1)) < 1:
        raise BadArguments(f"expected an adapter version like 3, 'v3' or 'penwright@v3', got {value!r}")
    return int(m.group(1))


async def rollback(ls, *args) -> dict:
    given = _one_optional(args, "an adapter version")
    version = _version(given) if given is not None else await _previous_version(ls)
    result = await ls.daemon.request("POST", f"/api/adapters/{version}/rollback")
    ls.shown.clear()
    return {"result": result, "message": f"Penwright: rolled back; adapter v{version} is live again."}


async def _previous_version(ls) -> int:
    """The newest version older than the live one that was once live (retired), to roll back to."""
    adapters = await ls.daemon.request("GET", "/api/adapters")
    items = adapters.get("adapters", []) if isinstance(adapters, dict) else adapters or []
    live = adapters.get("live") if isinstance(adapters, dict) else None
    if live is None:
        raise BadArguments("there is no live adapter to roll back from")
    older = [
        a["version"]
        for a in items
        if isinstance(a, dict) and a.get("status") == "retired" and a.get("version", 0) < live
    ]
    if not older:
        raise BadArguments(f"v{live} is the only adapter that was ever live; there is nothing to roll back to")
    return max(older)


async def select_adapter(ls, *args) -> dict:
    given = _one_optional(args, "'live', 'base' or an adapter version")
    if given is None or given in ("live", "penwright"):
        model = "penwright"
    elif given in ("base", "penwright:base"):
        model = "penwright:base"
    else:
        model = f"penwright@v{_version(given)}"
    models = await ls.daemon.request("GET", "/v1/models")
    ids = [m.get("id") for m in (models.get("data", []) if isinstance(models, dict) else []) if isinstance(m, dict)]
    if ids and model not in ids and model != "penwright":
        raise BadArguments(f"the daemon has no model {model!r}; it serves {', '.join(map(str, ids))}")
    ls.settings.model = model
    ls.shown.clear()
    return {"model": model, "message": f"Penwright: completions now come from {model}."}


async def accept_completion(ls, *args) -> dict:
    payload = args[0] if len(args) == 1 else None
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        raise BadArguments("expected one object with the suggestion's 'text' (as sent in the item's command)")
    accepted = payload.get("accepted", True) is not False
    shown = ls.shown.get(payload.get("uri", ""))
    if shown is not None and shown.id == payload.get("id"):
        shown.resolved = True
    where = await record_feedback(ls, {k: v for k, v in payload.items() if k != "accepted"}, accepted=accepted)
    return {"recorded": where, "quiet": True}


COMMANDS = {
    "penwright.retrainNow": retrain_now,
    "penwright.cancelTraining": cancel_training,
    "penwright.status": status,
    "penwright.rollback": rollback,
    "penwright.selectAdapter": select_adapter,
    "penwright.acceptCompletion": accept_completion,
}


async def continue_config(ls, *args) -> dict:
    _no_args(args)
    if ls.root is None:
        raise BadArguments("no Penwright project is open (no penwright.yaml in the workspace)")
    from penwright.server.continue_config import WORKSPACE_FILE, render

    return {"yaml": render(ls.root), "path": WORKSPACE_FILE.as_posix(), "quiet": True}


COMMANDS["penwright.continueConfig"] = continue_config
