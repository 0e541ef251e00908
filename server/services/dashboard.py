"""What the dashboard shows, derived once: the daemon's status, jobs and adapters as ONE consistent snapshot.

The page (server/static/dashboard.js) keeps this snapshot as its only state and applies the events that come
after it (`GET /api/events`), so the Training card, the Jobs table and the "waiting" message are all drawn from
the same object and cannot disagree. The contract:

- `last_event_id`: the snapshot reflects every event up to this id; the page applies only events after it.
- every job has a `phase` (PHASES); exactly the job whose `status` is "running" is the one training, and
  `status.running_job` names it (or is None). `event_phase` says which phase each event moves a job to; the page
  applies the same table to the events it receives, so the snapshot and the live page follow one rule.
- `status.waiting_for` (why no automatic retrain starts) is None while a job is queued or running: the
  scheduler's reason ("already trained on this dataset", ...) is about the next automatic job, not this one.

Built only from the daemon's public surface: `status()`, `jobs`, `registry` and the `events` bus.
"""

from __future__ import annotations

FINAL = ("succeeded", "failed", "cancelled")  # the job queue's final statuses
JOB_LIMIT = 20
ADAPTER_LIMIT = 20

# queued -> starting -> training <-> paused -> measuring (the child measures the candidate) -> judging (the gate
# decides and publishes) -> done (the job queue records the outcome).
PHASES = ("queued", "starting", "training", "paused", "measuring", "judging", "done")

# Which phase an event moves its job (`job_id`) to. `job.progress` is keyed by its `phase` field when it has one.
EVENT_PHASE = {
    "job.queued": "queued",
    "job.started": "starting",
    "job.progress": "training",
    "job.progress:train": "training",
    "job.progress:gate": "measuring",
    "job.paused": "paused",
    "job.resumed": "training",
    "job.finished": "judging",
    "gate": "judging",
    "job.failed": "done",
    "job.cancelled": "done",
}
PROGRESS_FIELDS = ("step", "total", "loss", "eval_loss")


def event_key(event: dict) -> str:
    """The EVENT_PHASE key of an event."""
    if event.get("type") == "job.progress" and event.get("phase"):
        return f"job.progress:{event['phase']}"
    return event.get("type", "")


def dashboard_state(daemon) -> dict:
    """Status, jobs (newest first, each with its phase), adapters and the live one, as of `last_event_id`."""
    # The event id is read first: what the database says below is at least that new, and events after it reach
    # the page through the stream (applying one twice or to a job already final changes nothing).
    last_event_id = daemon.events.last_id
    status = dict(daemon.status())
    jobs = [job.to_dict() for job in daemon.jobs.list(JOB_LIMIT)]
    live = daemon.registry.live()
    adapters = [version.to_dict() for version in daemon.registry.list()][-ADAPTER_LIMIT:]
    history = [e for e in daemon.events.since(0) if e["id"] <= last_event_id]
    settle_jobs(jobs, status.get("running_job"), history)
    running = next((j["id"] for j in jobs if j["status"] == "running"), None)
    active = running is not None or any(j["status"] == "queued" for j in jobs)
    status.update(
        running_job=running,
        waiting_for=None if active else status.get("waiting_for"),
        last_event_id=last_event_id,
    )
    return {
        "status": status,
        "jobs": jobs,
        "adapters": adapters,
        "live": live.to_dict() if live else None,
        "last_event_id": last_event_id,
        "event_phase": EVENT_PHASE,
    }


def settle_jobs(jobs: list[dict], trainer_job: int | None, history: list[dict]) -> None:
    """Give each job one status and phase that the job queue, the trainer and the events agree on (in place).

    The job queue is the record; the trainer holds a job for a moment before the queue marks it running (shown
    as running, "starting") and for a moment after the queue marks it final (shown final). Progress is written
    to the queue at most twice a second, so a running job takes its step and losses from its latest event.
    """
    for job in jobs:
        if job["status"] in FINAL:
            job["phase"] = "done"
        elif job["status"] == "running" or job["id"] == trainer_job:
            job["status"] = "running"
            job["phase"] = _running_phase(job, [e for e in history if e.get("job_id") == job["id"]])
        else:
            job["phase"] = "queued"


def _running_phase(job: dict, events: list[dict]) -> str:
    phase = "starting"
    for event in events:
        phase = EVENT_PHASE.get(event_key(event), phase)
        if event["type"] == "job.progress" and event.get("step") is not None:
            job.update({k: event[k] for k in PROGRESS_FIELDS if event.get(k) is not None})
    return "starting" if phase in ("queued", "done") else phase
