"""When to retrain, and on what.

Policy (`retrain:` in penwright.yaml): start a background job when at least
`min_new_words` new or changed words are waiting, the author has been idle for
`idle_seconds`, fewer than `max_per_hour` automatic jobs started in the last
hour, and no job is running (one at a time). "Retrain now" (manual) skips the
wait and the words threshold, and goes ahead of queued automatic jobs.

Policy only: what counts as pending words and how a warm retrain's set is
mixed lives in the trainer (`penwright.trainer.increments`); the dataset keeper
reports the state, the job runner runs what this starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


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

    def wake(self) -> None:
        """Decide again now (a job ended, the dataset changed) instead of at the next half-second tick."""
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
