"""Training, jobs, adapters and feedback: `/api/train`, `/api/jobs`, `/api/adapters`, `/api/feedback`.

Thin: translates HTTP to the daemon's operations (`request.app.state.daemon`) and errors to the OpenAI shape.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import ConfigDict, Field, StrictBool

from penwright.server.protocol import StrictRequest

router = APIRouter(prefix="/api", tags=["training"])


MAX_ID = 2**63 - 1  # SQLite's INTEGER
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="A positive whole number (as listed by the GET route).")]
FEEDBACK_TEXT = 20_000  # characters of a suggestion or its context kept in feedback.jsonl


class TrainRequest(StrictRequest):
    model_config = ConfigDict(extra="forbid")
    preset: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="A preset name (fast, regular, ...) "
        "or the path of a YAML file inside the project; default: penwright.yaml's.",
    )
    overrides: dict = Field(
        default_factory=dict,
        max_length=64,
        description="Training fields on top of the preset and penwright.yaml's overrides.",
    )


class FeedbackRequest(StrictRequest):
    """A suggestion and what the author did with it; clients add their own fields (the editor: uri, chapter, lore,
    context), kept as they are within the route's 64 KiB body limit."""

    accepted: StrictBool
    text: str = Field("", max_length=FEEDBACK_TEXT)
    adapter: str | None = Field(None, max_length=200)
    prefix: str | None = Field(None, max_length=FEEDBACK_TEXT)
    document: str | None = Field(None, max_length=4096)


def _daemon(request: Request):
    return request.app.state.daemon


@router.post("/train")
def train_now(request: Request, body: TrainRequest | None = None):
    daemon = _daemon(request)
    body = body or TrainRequest()
    return {"job": daemon.retrain_now(body.preset, body.overrides).to_dict()}


@router.get("/jobs")
def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50):
    daemon = _daemon(request)
    return {"jobs": [j.to_dict() for j in daemon.jobs.list(limit)], "running": daemon.running_job_id()}


@router.get("/jobs/{job_id}")
def get_job(request: Request, job_id: Id):
    return {"job": _daemon(request).jobs.get(job_id).to_dict()}


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: Id):
    return {"job": _daemon(request).cancel(job_id).to_dict()}


@router.get("/adapters")
def list_adapters(request: Request):
    reg = _daemon(request).registry
    live = reg.live()
    return {"adapters": [v.to_dict() for v in reg.list()], "live": live.version if live else None}


@router.post("/adapters/{version}/promote")
def promote(request: Request, version: Id):
    return {"adapter": _daemon(request).promote(version)}


@router.post("/adapters/{version}/rollback")
def rollback(request: Request, version: Id):
    return {"adapter": _daemon(request).rollback(version)}


@router.get("/runs/{run_id}/log")
def run_log(request: Request, run_id: Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]):
    """Loss curve of one run (train_log.json), for the dashboard chart."""
    path = _daemon(request).paths.runs / run_id / "train_log.json"
    try:
        return {"run_id": run_id, "log": json.loads(path.read_text())}
    except (FileNotFoundError, json.JSONDecodeError):
        return {"run_id": run_id, "log": []}


@router.post("/feedback")
def feedback(request: Request, body: FeedbackRequest):
    """Accepted/rejected suggestions, appended to .penwright/feedback.jsonl for later preference training."""
    daemon = _daemon(request)
    row = {**body.model_dump(), "time": time.time()}
    with open(daemon.paths.feedback, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"ok": True}
