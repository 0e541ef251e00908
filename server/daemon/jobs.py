"""The training job queue, in SQLite (`.penwright/penwright.db`, table `jobs`).

A job is queued, running, then succeeded, failed or cancelled. The queue
survives a daemon restart: `recover()` turns a job that was `running` when the
daemon died back into `queued` with `resume=1`, so the runner continues from
the run's last checkpoint (or starts over when there is none).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from penwright.errors import NotFoundError

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL: tuple[str, ...] = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    preset TEXT,
    run_id TEXT,
    resume INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    loss REAL,
    eval_loss REAL,
    error TEXT,
    decision TEXT,
    adapter_version INTEGER,
    info TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
"""


class JobNotFoundError(NotFoundError):
    code = "job_not_found"

    def __init__(self, job_id: int):
        super().__init__(f"There is no training job {job_id}.", "`GET /api/jobs` (or the dashboard) lists the jobs.")


@dataclass
class Job:
    id: int
    status: str
    trigger: str
    preset: str | None
    run_id: str | None
    resume: bool
    attempts: int
    pid: int | None
    step: int
    total: int
    loss: float | None
    eval_loss: float | None
    error: str | None
    decision: str | None
    adapter_version: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class JobQueue:
    """Thread-safe; one short-lived connection per operation (WAL, so readers never block the writer)."""

    def __init__(self, database: Path):
        self.database = Path(database)
        self.database.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        db = sqlite3.connect(self.database, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.database, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()

    @staticmethod
    def _row(row: sqlite3.Row) -> Job:
        data = dict(row)
        data["resume"] = bool(data["resume"])
        data["info"] = json.loads(data.get("info") or "{}")
        return Job(**data)

    def enqueue(self, trigger: str, preset: str | None = None, info: dict | None = None) -> Job:
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO jobs (status, trigger, preset, info, created_at) VALUES ('queued', ?, ?, ?, ?)",
                (trigger, preset, json.dumps(info or {}), time.time()),
            )
            return self._row(db.execute("SELECT * FROM jobs WHERE id=?", (cur.lastrowid,)).fetchone())

    def get(self, job_id: int) -> Job:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return self._row(row)

    def list(self, limit: int = 50) -> list[Job]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._row(r) for r in rows]

    def with_status(self, *statuses: str) -> list[Job]:
        marks = ",".join("?" * len(statuses))
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id", statuses).fetchall()
        return [self._row(r) for r in rows]

    def next_queued(self) -> Job | None:
        """Manual jobs first, then oldest first."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE status='queued' ORDER BY (trigger='manual') DESC, id LIMIT 1"
            ).fetchone()
        return self._row(row) if row else None

    def start(self, job_id: int, run_id: str) -> Job:
        """queued -> running; refuses when another job is running (one at a time)."""
        with self._connect() as db:
            busy = db.execute("SELECT id FROM jobs WHERE status='running' AND id<>?", (job_id,)).fetchone()
            if busy:
                raise RuntimeError(f"job {busy['id']} is already running")
            db.execute(
                "UPDATE jobs SET status='running', run_id=?, attempts=attempts+1, started_at=?, error=NULL "
                "WHERE id=? AND status='queued'",
                (run_id, time.time(), job_id),
            )
            return self._row(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def update(self, job_id: int, **fields) -> None:
        if "info" in fields:
            fields["info"] = json.dumps(fields["info"])
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def finish(self, job_id: int, status: Status, **fields) -> Job:
        """Move a job to a final state; a job already final stays as it was (cancel wins races)."""
        assert status in FINAL
        with self._connect() as db:
            row = db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            if row["status"] not in FINAL:
                if "info" in fields:
                    fields["info"] = json.dumps(fields["info"])
                sets = "".join(f", {k}=?" for k in fields)
                db.execute(
                    f"UPDATE jobs SET status=?, finished_at=?, pid=NULL{sets} WHERE id=?",
                    (status, time.time(), *fields.values(), job_id),
                )
            return self._row(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def recover(self) -> list[Job]:
        """After a restart: running jobs go back to the queue, marked to resume from their checkpoint."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status='running'").fetchall()
            db.execute("UPDATE jobs SET status='queued', resume=1 WHERE status='running'")
        return [self._row(r) for r in rows]

    def started_since(self, since: float, trigger: str | None = None) -> int:
        with self._connect() as db:
            if trigger:
                q = "SELECT COUNT(*) FROM jobs WHERE started_at>=? AND trigger=?"
                return db.execute(q, (since, trigger)).fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM jobs WHERE started_at>=?", (since,)).fetchone()[0]
