"""The adapter registry: numbered adapter versions in SQLite, their files under `adapters/<name>/v<N>/`.

Publishing is atomic for readers and crash-safe:

1. the adapter is copied into `adapters/<name>/.staging-<random>/` and every file is fsynced;
2. inside one SQLite transaction a row is inserted (its version number comes from
   AUTOINCREMENT, so numbers are never reused), the staging folder is renamed to
   `v<N>`, the parent folder is fsynced, and only then the transaction commits.

A kill before the commit leaves no row: the staging folder or an orphan `v<N>`
folder is swept away the next time a Registry is opened. A kill after the commit
leaves a complete folder. A reader (another thread or the daemon) only sees
committed rows, and a committed row's folder is always complete.

Statuses: `candidate` (published, not served), `live` (served; at most one per
name), `retired` (was live), `rejected` (failed the gate; `reason` says why).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from penwright.errors import AdapterNotFoundError, RegistryError

Status = Literal["candidate", "live", "retired", "rejected"]
STATUSES = ("candidate", "live", "retired", "rejected")
NAME_RE = re.compile(r"^\w+$", re.ASCII)
DEFAULT_NAME = "penwright"

SCHEMA = """
CREATE TABLE IF NOT EXISTS adapter_versions (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    base_model TEXT NOT NULL DEFAULT '',
    run_id TEXT,
    dataset_hash TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    reason TEXT,
    created_at TEXT NOT NULL,
    promoted_at TEXT
);
CREATE INDEX IF NOT EXISTS adapter_versions_name ON adapter_versions(name, status);
CREATE TABLE IF NOT EXISTS adapter_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL,
    action TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class AdapterVersion:
    version: int
    name: str
    path: Path
    status: Status
    base_model: str
    run_id: str | None
    dataset_hash: str | None
    metrics: dict = field(default_factory=dict)
    reason: str | None = None
    created_at: str = ""

    @property
    def format(self) -> str:
        """`peft` (adapter_config.json) or `mlx` (adapters.safetensors from mlx-lm)."""
        if (self.path / "adapter_config.json").is_file() and (self.path / "adapters.safetensors").is_file():
            return "mlx"
        return "peft"

    @property
    def model_id(self) -> str:
        """The served model id of this version, e.g. `penwright@v7`."""
        return f"{self.name}@v{self.version}"

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "base_model": self.base_model,
            "run_id": self.run_id,
            "dataset_hash": self.dataset_hash,
            "metrics": self.metrics,
            "reason": self.reason,
            "created_at": self.created_at,
            "format": self.format,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError(
            f"Adapter name {name!r} is not allowed.",
            "Use letters, digits and underscores only (e.g. penwright or my_novel).",
        )
    return name


def fsync_tree(folder: Path) -> None:
    """fsync every file, then every folder (bottom up), so a rename after this publishes complete data."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for path in [*sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), folder]:
        fsync_dir(path)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


class Registry:
    """Adapter versions of one project. Safe to use from several threads and processes (one connection per call)."""

    def __init__(self, database: Path | str, adapters_dir: Path | str):
        self.database = Path(database)
        self.adapters_dir = Path(adapters_dir)
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        self.database.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.database, timeout=30)
        try:
            db.executescript(SCHEMA)
        finally:
            db.close()
        self.sweep()

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Cross-process lock around file moves, so `sweep` never takes another process's staging folder
        (filelock: flock on POSIX, msvcrt on Windows)."""
        from filelock import FileLock

        with FileLock(self.adapters_dir / ".lock"):
            yield

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _row(self, row: tuple) -> AdapterVersion:
        version, name, status, base, run_id, dhash, metrics, reason, created = row
        return AdapterVersion(
            version=version,
            name=name,
            path=self.adapters_dir / name / f"v{version}",
            status=status,
            base_model=base,
            run_id=run_id,
            dataset_hash=dhash,
            metrics=json.loads(metrics or "{}"),
            reason=reason,
            created_at=created,
        )

    _COLS = "version, name, status, base_model, run_id, dataset_hash, metrics, reason, created_at"

    # -- reading -------------------------------------------------------------------------------------------------

    def list(self, name: str | None = None) -> list[AdapterVersion]:
        with self._tx(write=False) as db:
            if name is None:
                rows = db.execute(f"SELECT {self._COLS} FROM adapter_versions ORDER BY version").fetchall()
            else:
                rows = db.execute(
                    f"SELECT {self._COLS} FROM adapter_versions WHERE name=? ORDER BY version", (name,)
                ).fetchall()
        return [self._row(r) for r in rows]

    def get(self, version: int) -> AdapterVersion:
        if not 0 < int(version) < 2**63:  # SQLite's INTEGER: a larger number can name no version
            raise AdapterNotFoundError(version)
        with self._tx(write=False) as db:
            row = db.execute(f"SELECT {self._COLS} FROM adapter_versions WHERE version=?", (int(version),)).fetchone()
        if row is None:
            raise AdapterNotFoundError(version)
        return self._row(row)

    def live(self, name: str = DEFAULT_NAME) -> AdapterVersion | None:
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {self._COLS} FROM adapter_versions WHERE name=? AND status='live'", (name,)
            ).fetchone()
        return self._row(row) if row else None

    def latest(self, name: str = DEFAULT_NAME) -> AdapterVersion | None:
        versions = self.list(name)
        return versions[-1] if versions else None

    def for_run(self, run_id: str, name: str = DEFAULT_NAME) -> AdapterVersion | None:
        """The version a training run was published as, if it was (one run publishes at most once)."""
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {self._COLS} FROM adapter_versions WHERE name=? AND run_id=? ORDER BY version LIMIT 1",
                (name, run_id),
            ).fetchone()
        return self._row(row) if row else None

    def history(self, version: int | None = None) -> list[dict]:
        with self._tx(write=False) as db:
            q = "SELECT version, action, reason, at FROM adapter_events"
            rows = db.execute(
                q + (" WHERE version=? ORDER BY id" if version else " ORDER BY id"), (version,) if version else ()
            ).fetchall()
        return [dict(zip(("version", "action", "reason", "at"), r)) for r in rows]

    # -- writing -------------------------------------------------------------------------------------------------

    def publish(
        self,
        source: Path | str,
        name: str = DEFAULT_NAME,
        *,
        base_model: str = "",
        run_id: str | None = None,
        dataset_hash: str | None = None,
        metrics: dict | None = None,
    ) -> AdapterVersion:
        """Copy the adapter folder `source` in as a new `candidate` version, atomically."""
        check_name(name)
        source = Path(source)
        if not source.is_dir() or not any(source.iterdir()):
            raise RegistryError(
                f"{source} is not an adapter folder (missing or empty).",
                "Publish the folder a training run saved (it holds adapter_config.json).",
            )
        parent = self.adapters_dir / name
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".staging-{uuid.uuid4().hex[:12]}"
        with self._lock():
            return self._publish(source, staging, name, base_model, run_id, dataset_hash, metrics)

    def _publish(self, source, staging, name, base_model, run_id, dataset_hash, metrics) -> AdapterVersion:
        parent = staging.parent
        try:
            shutil.copytree(source, staging)
            fsync_tree(staging)
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO adapter_versions (name, status, base_model, run_id, dataset_hash, metrics, created_at)"
                    " VALUES (?, 'candidate', ?, ?, ?, ?, ?)",
                    (name, base_model, run_id, dataset_hash, json.dumps(metrics or {}, sort_keys=True), _now()),
                )
                version = cur.lastrowid
                final = parent / f"v{version}"
                if final.exists():  # an orphan from a crash whose row never committed
                    shutil.rmtree(final)
                os.replace(staging, final)
                fsync_dir(parent)
                db.execute(
                    "INSERT INTO adapter_events (version, action, at) VALUES (?, 'publish', ?)", (version, _now())
                )
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return self.get(version)

    def _event(self, db: sqlite3.Connection, version: int, action: str, reason: str | None = None) -> None:
        db.execute(
            "INSERT INTO adapter_events (version, action, reason, at) VALUES (?, ?, ?, ?)",
            (version, action, reason, _now()),
        )

    def promote(self, version: int, reason: str | None = None) -> AdapterVersion:
        """Make `version` the live one of its name; the previous live version is retired."""
        target = self.get(version)
        if not target.path.is_dir():
            raise RegistryError(f"v{version}'s files are missing ({target.path}).", "Delete it and publish again.")
        with self._tx() as db:
            db.execute(
                "UPDATE adapter_versions SET status='retired' WHERE name=? AND status='live' AND version<>?",
                (target.name, version),
            )
            db.execute(
                "UPDATE adapter_versions SET status='live', promoted_at=?, reason=COALESCE(?, reason) WHERE version=?",
                (_now(), reason, version),
            )
            self._event(db, version, "promote", reason)
        return self.get(version)

    def rollback(
        self, to_version: int | None = None, name: str = DEFAULT_NAME, reason: str | None = None
    ) -> AdapterVersion:
        """Serve an earlier version again: `to_version`, or else the one that was live before the current one."""
        current = self.live(name)
        if to_version is None:
            if current is None:
                raise RegistryError(f"No live '{name}' adapter to roll back from.", "Promote a version first.")
            with self._tx() as db:
                row = db.execute(
                    "SELECT version FROM adapter_versions WHERE name=? AND status='retired' AND version<>? "
                    "ORDER BY promoted_at DESC, version DESC LIMIT 1",
                    (name, current.version),
                ).fetchone()
            if row is None:
                raise RegistryError(
                    f"v{current.version} is the only '{name}' adapter ever promoted.",
                    "Use `penwright adapters rollback VERSION` to pick one, or disable the adapter.",
                )
            to_version = row[0]
        target = self.get(to_version)
        if current is not None and target.version == current.version:
            raise RegistryError(f"v{to_version} is already live.", "Pick an earlier version.")
        promoted = self.promote(target.version, reason)
        with self._tx() as db:
            self._event(db, target.version, "rollback", reason or (f"from v{current.version}" if current else None))
        return promoted

    def rollback_to_checkpoint(
        self, checkpoint_adapter: Path | str, name: str = DEFAULT_NAME, **meta
    ) -> AdapterVersion:
        """Publish an earlier checkpoint of a run (its adapter folder) as a new version and make it live."""
        version = self.publish(checkpoint_adapter, name, **meta)
        return self.rollback(version.version, name, reason=f"checkpoint {Path(checkpoint_adapter)}")

    def reject(self, version: int, reason: str) -> AdapterVersion:
        """Mark a candidate as failed (e.g. by the evaluation gate), keeping its files for inspection."""
        target = self.get(version)
        if target.status == "live":
            raise RegistryError(f"v{version} is live and cannot be rejected.", "Roll back to another version first.")
        with self._tx() as db:
            db.execute("UPDATE adapter_versions SET status='rejected', reason=? WHERE version=?", (reason, version))
            self._event(db, version, "reject", reason)
        return self.get(version)

    def delete(self, version: int) -> None:
        """Remove a version's row and files. The live version cannot be deleted."""
        target = self.get(version)
        if target.status == "live":
            raise RegistryError(f"v{version} is live and cannot be deleted.", "Roll back to another version first.")
        trash = target.path.parent / f".deleted-v{version}-{uuid.uuid4().hex[:6]}"
        with self._lock(), self._tx() as db:
            db.execute("DELETE FROM adapter_versions WHERE version=?", (version,))
            self._event(db, version, "delete")
            if target.path.exists():
                os.replace(target.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def sweep(self) -> list[Path]:
        """Remove what a crash left behind: staging and trash folders, and `v<N>` folders without a row."""
        with self._lock(), self._tx() as db:
            known = {(n, v) for v, n in db.execute("SELECT version, name FROM adapter_versions")}
            removed = self._sweep(known)
        return removed

    def _sweep(self, known: set) -> list[Path]:
        removed = []
        for parent in (p for p in self.adapters_dir.iterdir() if p.is_dir()):
            for child in parent.iterdir():
                stray = child.name.startswith((".staging-", ".deleted-"))
                m = re.fullmatch(r"v(\d+)", child.name)
                orphan = m is not None and (parent.name, int(m.group(1))) not in known
                if child.is_dir() and (stray or orphan):
                    shutil.rmtree(child, ignore_errors=True)
                    removed.append(child)
        return removed
