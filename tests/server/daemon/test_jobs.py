"""The SQLite job queue: states, order, one-at-a-time, restart recovery."""

from __future__ import annotations

import pytest

from penwright.server.daemon.jobs import JobNotFoundError, JobQueue


def test_lifecycle_and_manual_first(tmp_path):
    q = JobQueue(tmp_path / "p.db")
    auto = q.enqueue("auto")
    manual = q.enqueue("manual", preset="regular")
    assert q.next_queued().id == manual.id  # manual jumps ahead of an older automatic job
    running = q.start(manual.id, "run-1")
    assert running.status == "running" and running.run_id == "run-1" and running.attempts == 1
    with pytest.raises(RuntimeError, match="already running"):
        q.start(auto.id, "run-2")
    q.update(manual.id, step=3, total=10, loss=2.5)
    done = q.finish(manual.id, "succeeded", decision="promote", adapter_version=4)
    assert (done.status, done.step, done.loss, done.adapter_version) == ("succeeded", 3, 2.5, 4)
    assert done.finished_at >= done.started_at
    # a final job stays final: a late "failed" cannot overwrite a cancel or success
    assert q.finish(manual.id, "failed", error="late").status == "succeeded"
    assert q.next_queued().id == auto.id
    assert [j.id for j in q.list()] == [manual.id, auto.id]


def test_survives_restart_and_running_job_is_requeued_to_resume(tmp_path):
    db = tmp_path / "p.db"
    q = JobQueue(db)
    job = q.enqueue("auto")
    q.start(job.id, "run-x")
    q.update(job.id, pid=999999, step=5)
    # the daemon dies here; a new one opens the same database
    q2 = JobQueue(db)
    recovered = q2.recover()
    assert [j.id for j in recovered] == [job.id]
    again = q2.get(job.id)
    assert again.status == "queued" and again.resume and again.run_id == "run-x" and again.step == 5
    assert q2.start(job.id, "run-x").attempts == 2


def test_unknown_job_and_rate_count(tmp_path):
    q = JobQueue(tmp_path / "p.db")
    with pytest.raises(JobNotFoundError, match="no training job 42"):
        q.get(42)
    j = q.enqueue("auto")
    q.start(j.id, "r")
    assert q.started_since(0, trigger="auto") == 1 and q.started_since(0, trigger="manual") == 0
