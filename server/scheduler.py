"""When to retrain, and on what.

Policy (`retrain:` in penwright.yaml): start a background job when at least
`min_new_words` new or changed words are waiting, the author has been idle for
`idle_seconds`, fewer than `max_per_hour` automatic jobs started in the last
hour, and no job is running (one at a time). "Retrain now" (manual) skips the
wait and the words threshold, and goes ahead of queued automatic jobs.

Warm start: a retrain continues from the live adapter on the updated dataset,
with the new passages weighted up and a replay share of older ones, so the
voice does not drift toward the latest chapter only (`build_warm_dataset`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ROWS_FILE = "rows.json"  # in a run folder: hashes of every train row the adapter has seen
NEW_WEIGHT = 2  # new passages appear this many times in a warm retrain


def row_key(row: dict) -> str:
    return hashlib.sha1(json.dumps(row.get("messages", row), sort_keys=True).encode()).hexdigest()[:16]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def seen_rows(run_dir: Path | None) -> set[str] | None:
    if run_dir is None or not (run_dir / ROWS_FILE).is_file():
        return None
    return set(json.loads((run_dir / ROWS_FILE).read_text()))


def target_words(row: dict) -> int:
    """Words of the author's passage a row stands for (its recorded size, else the completion or last message)."""
    if isinstance(row.get("words"), int):
        return row["words"]
    if isinstance(row.get("completion"), str):
        return len(row["completion"].split())
    msgs = row.get("messages") or []
    return len(msgs[-1].get("content", "").split()) if msgs else 0


def pending_words(rows: list[dict], seen: set[str] | None) -> int:
    """New or changed words since the live adapter's dataset: per new chunk, its longest target."""
    per_chunk: dict[str, int] = {}
    for row in rows:
        if seen is not None and row_key(row) in seen:
            continue
        chunk = str(row.get("chunk") or row_key(row))
        per_chunk[chunk] = max(per_chunk.get(chunk, 0), target_words(row))
    return sum(per_chunk.values())


def build_warm_dataset(current: Path, out: Path, seen: set[str] | None, replay_share: float, seed: int = 0) -> dict:
    """Write `out/train.jsonl` (new rows x NEW_WEIGHT + a replay sample of old ones) and `out/valid.jsonl` (as is)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(current / "train.jsonl")
    if (current / "valid.jsonl").is_file():
        shutil.copyfile(current / "valid.jsonl", out / "valid.jsonl")
    new = [r for r in rows if seen is None or row_key(r) not in seen]
    old = [r for r in rows if seen is not None and row_key(r) in seen]
    if seen is None or not new:  # first adapter, or nothing new: the whole set
        mixed, n_replay = list(rows), len(old)
    else:
        weighted = new * NEW_WEIGHT
        # old / (weighted + old) = replay_share
        n_replay = (
            min(len(old), round(len(weighted) * replay_share / max(1e-9, 1 - replay_share)))
            if replay_share < 1
            else len(old)
        )
        mixed = weighted + random.Random(seed).sample(old, n_replay)
    random.Random(seed).shuffle(mixed)
    with open(out / "train.jsonl", "w", encoding="utf-8") as fh:
        for r in mixed:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return {"rows": len(mixed), "new_rows": len(new), "replay_rows": n_replay, "all_rows": len(rows)}


def write_seen(run_dir: Path, current: Path) -> None:
    keys = sorted({row_key(r) for r in read_rows(current / "train.jsonl")})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ROWS_FILE).write_text(json.dumps(keys))


class Scheduler:
    """Decides when jobs start. `tick()` is one decision; `start()` runs it on a thread."""

    def __init__(
        self,
        policy,
        jobs,
        start_job: Callable,
        is_busy: Callable[[], bool],
        dataset_state: Callable[[], tuple[int, str]],
        publish: Callable,
        clock=time.time,
    ):
        self.policy, self.jobs, self.start_job, self.is_busy = policy, jobs, start_job, is_busy
        self.dataset_state, self.publish, self.clock = dataset_state, publish, clock
        self.last_activity = clock()
        self._last_auto_fingerprint: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note_activity(self) -> None:
        """The author saved (or typed): the idle clock restarts."""
        self.last_activity = self.clock()
        self._wake.set()

    def request(self, trigger: str = "manual", preset: str | None = None, info: dict | None = None):
        job = self.jobs.enqueue(trigger, preset, info)
        self.publish("job.queued", job_id=job.id, trigger=trigger, preset=preset)
        self._wake.set()
        return job

    def why_not(self) -> str | None:
        """None when an automatic retrain should start now; otherwise the reason it waits."""
        p = self.policy
        if not p.enabled:
            return "automatic retraining is off (retrain.enabled)"
        words, fingerprint = self.dataset_state()
        if words < p.min_new_words:
            return f"{words} new words of {p.min_new_words}"
        if fingerprint == self._last_auto_fingerprint:
            return "already trained on this dataset"
        idle = self.clock() - self.last_activity
        if idle < p.idle_seconds:
            return f"author active {idle:.0f}s ago (waits {p.idle_seconds:.0f}s)"
        if self.jobs.started_since(self.clock() - 3600, trigger="auto") >= p.max_per_hour:
            return f"{p.max_per_hour} automatic retrains in the last hour already"
        return None

    def tick(self) -> object | None:
        """Start the next queued job, or queue an automatic one when the policy says so."""
        if self.is_busy():
            return None
        job = self.jobs.next_queued()
        if job is None and self.why_not() is None:
            self._last_auto_fingerprint = self.dataset_state()[1]
            job = self.request("auto")
        if job is not None:
            self.start_job(job)
        return job

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:
                log.exception("scheduler tick failed")
                self.publish("error", message=f"scheduler: {err}")
            self._wake.wait(timeout=0.5)
            self._wake.clear()

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="penwright-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
