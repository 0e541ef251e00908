"""The job runner: queued jobs, one at a time, each in a training child, then through the gate.

For a job: build its dataset (warm start: new passages weighted up + a replay
share), spawn the child, relay its progress as `job.progress` events, and when
it ends publish + judge the candidate (gate.py). A restart resumes a job that
was running from its run folder (the child continues from the last checkpoint
when there is one).
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from penwright.server.daemon.child import ChildRun, RunOutcome, Standby, kill_stale_child, train_threads
from penwright.server.daemon.gate import Gate, decide
from penwright.server.daemon.jobs import Job, JobQueue
from penwright.server.daemon.keeper import DatasetKeeper
from penwright.server.settings import RetrainPolicy
from penwright.trainer.increments import build_warm_dataset, seen_rows, write_seen

log = logging.getLogger(__name__)

# What the child may leave in a run folder that is NOT a finished adapter: removed on cancel.
PARTIAL_OUTPUTS = ("adapter", "final", "checkpoints", "candidate")


class JobRunner:
    """Runs what the scheduler starts. Given its collaborators; `on_idle` is called when a job ends, `share_cpu(n)`
    tells the serving engine how many cores the child takes (CPU serving)."""

    def __init__(
        self,
        jobs: JobQueue,
        registry,
        keeper: DatasetKeeper,
        gate: Gate,
        runs_dir: Path,
        policy: RetrainPolicy,
        publish: Callable[..., object],
        share_cpu: Callable[[int], None] = lambda threads: None,
    ):
        self.jobs, self.registry, self.keeper, self.gate = jobs, registry, keeper, gate
        self.runs_dir, self.policy, self.publish, self.share_cpu = Path(runs_dir), policy, publish, share_cpu
        self.on_idle: Callable[[], None] = lambda: None
        self._shutting_down = False
        self._lock = threading.Lock()
        self._child: ChildRun | None = None
        self._job_id: int | None = None
        self._thread: threading.Thread | None = None
        self._cancelled: set[int] = set()
        self._resume_timer: threading.Timer | None = None  # pause_while_typing: when the child continues
        self._standby = Standby(policy.standby_child)  # the next job's child, started ahead (recover, job ends)

    # -- state ---------------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        with self._lock:
            return self._job_id is not None

    def running_job_id(self) -> int | None:
        with self._lock:
            return self._job_id

    def child_pid(self) -> int | None:
        with self._lock:
            return self._child.pid if self._child else None

    def recover(self) -> None:
        """After a restart: kill a training child the old daemon left, and queue its job to resume."""
        for job in self.jobs.with_status("running"):
            if kill_stale_child(job.pid):
                log.warning("killed the training child (pid %s) left by the previous daemon", job.pid)
        for job in self.jobs.recover():
            self.publish(
                "job.queued",
                job_id=job.id,
                trigger=job.trigger,
                resume=True,
                message=f"job {job.id} was running when the daemon stopped; it resumes",
            )
        self._standby.ensure()

    # -- start / cancel ------------------------------------------------------------------------------------------
    def start(self, job: Job) -> None:
        with self._lock:
            if self._job_id is not None:
                return
            self._job_id = job.id
        self._thread = threading.Thread(target=self._run_safely, args=(job,), name=f"job-{job.id}", daemon=True)
        self._thread.start()

    def cancel(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job.status == "queued":
            job = self.jobs.finish(job_id, "cancelled", error="cancelled before it started")
            self.publish("job.cancelled", job_id=job_id)
            return job
        with self._lock:
            child = self._child if self._job_id == job_id else None
            if self._job_id == job_id:
                self._cancelled.add(job_id)
        if child is not None:
            child.cancel()
        if job.status == "running":
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.running_job_id() == job_id:
                time.sleep(0.05)
            job = self.jobs.get(job_id)
        return job

    def author_typing(self) -> None:
        """`retrain.pause_while_typing`: a completion request stops the training child until none has come for
        `retrain.pause_quiet_seconds`; then it continues where it was (no work lost, its memory kept)."""
        quiet = self.policy.pause_quiet_seconds
        with self._lock:
            child, job_id = self._child, self._job_id
            if child is None:
                return
            newly = self._resume_timer is None
            if not newly:
                self._resume_timer.cancel()
            self._resume_timer = threading.Timer(quiet, self._continue, args=(child, job_id))
            self._resume_timer.daemon = True
            self._resume_timer.start()
        if newly:
            child.pause(True)
            self.publish(
                "job.paused", job_id=job_id, message=f"training paused while you write (resumes after {quiet:g} s idle)"
            )

    def _continue(self, child: ChildRun, job_id: int | None) -> None:
        with self._lock:
            if threading.current_thread() is not self._resume_timer:
                return  # a later request re-armed the pause (or the job ended) while this timer fired
            self._resume_timer = None
        child.pause(False)
        self.publish("job.resumed", job_id=job_id)

    def shutdown(self) -> None:
        """Daemon stopping: stop the child; the job stays `running` in the database so the next start resumes it."""
        with self._lock:
            child = self._child
            self._shutting_down = True
        if child is not None:
            child.cancel()
        self._standby.close()

    # -- one job -------------------------------------------------------------------------------------------------
    def _run_safely(self, job: Job) -> None:
        try:
            self._run(job)
        except Exception as err:  # never let a job kill the scheduler
            log.exception("job %s failed in the daemon", job.id)
            self.jobs.finish(job.id, "failed", error=_describe(err))
            self.publish("job.failed", job_id=job.id, error=_describe(err))
        finally:
            with self._lock:
                self._job_id, self._child = None, None
                if self._resume_timer is not None:
                    self._resume_timer.cancel()
                    self._resume_timer = None
            self._share_cpu(0)
            if not self._shutting_down:
                self._standby.ensure()
            self.on_idle()

    def _run(self, job: Job) -> None:
        published = self.registry.for_run(job.run_id) if job.run_id else None
        if published is not None:  # the daemon died after publishing this run: finish the job, never publish twice
            self._settle(job, published)
            return
        resume = bool(job.resume and job.run_id and (self.runs_dir / job.run_id).is_dir())
        run_id = job.run_id if resume else f"{time.strftime('%Y%m%d-%H%M%S')}-j{job.id}-{uuid.uuid4().hex[:4]}"
        run_dir = self.runs_dir / run_id
        job = self.jobs.start(job.id, run_id)
        live = self.registry.live()
        data_dir = run_dir / "data"
        mix = job.info.get("mix") if resume and (data_dir / "train.jsonl").is_file() else None
        if mix is None:
            mix = self._prepare_data(run_dir, data_dir, live)
            self.jobs.update(job.id, info={**job.info, "mix": mix})
        spec = self.keeper.child_spec(run_dir, data_dir, job, live, resume)
        self.publish(
            "job.started",
            job_id=job.id,
            run_id=run_id,
            trigger=job.trigger,
            resume=resume,
            warm_start=spec.get("init_adapter") is not None,
            dataset=mix,
        )
        child = ChildRun(spec, run_dir / "job.json", self._relay(job.id), standby=self._standby.take())
        self._share_cpu(train_threads())
        with self._lock:
            self._child = child
            cancelled_early = job.id in self._cancelled
        self.jobs.update(job.id, pid=child.pid)
        if cancelled_early:
            child.cancel()
        self._finish(job, run_dir, child.wait())

    def _share_cpu(self, child_threads: int) -> None:
        """The serving engine leaves the child's cores to it while it trains (CPU serving only)."""
        try:
            self.share_cpu(child_threads)
        except Exception:  # serving keeps its threads: slower while training, never broken
            log.warning("could not adjust the engine's CPU threads", exc_info=True)

    def _prepare_data(self, run_dir: Path, data_dir: Path, live) -> dict:
        current = self.keeper.current_dir
        seen = seen_rows(self.runs_dir / live.run_id) if live is not None and live.run_id else None
        warm = self.policy.warm_start and live is not None
        mix = build_warm_dataset(current, data_dir, seen if warm else None, self.policy.replay_share)
        write_seen(run_dir, current)
        return mix

    def _relay(self, job_id: int):
        last = {"t": 0.0}

        def on_event(msg: dict) -> None:
            kind = msg.get("event")
            if kind == "progress":
                fields = {k: msg.get(k) for k in ("step", "total", "loss", "eval_loss", "eta_s", "phase")}
                self.publish("job.progress", job_id=job_id, **fields)
                now = time.monotonic()
                if now - last["t"] > 0.5 or msg.get("step") == msg.get("total"):
                    last["t"] = now
                    upd = {k: fields[k] for k in ("step", "total", "loss", "eval_loss") if fields[k] is not None}
                    if upd:
                        self.jobs.update(job_id, **upd)
            elif kind == "phase":
                self.publish(
                    "job.progress", job_id=job_id, phase=msg.get("phase"), step=msg.get("step"), total=msg.get("total")
                )

        return on_event

    def _finish(self, job: Job, run_dir: Path, outcome: RunOutcome) -> None:
        if outcome.status == "cancelled" and self._shutting_down:
            return  # daemon stopping: stays `running`, resumed on the next start
        if outcome.status == "cancelled":
            for name in PARTIAL_OUTPUTS:
                shutil.rmtree(run_dir / name, ignore_errors=True)
            self.jobs.finish(job.id, "cancelled", error="cancelled")
            self.publish("job.cancelled", job_id=job.id, run_id=job.run_id)
            return
        if outcome.status == "failed":
            self.jobs.finish(job.id, "failed", error=outcome.error)
            self.publish("job.failed", job_id=job.id, error=outcome.error)
            return
        result = outcome.result
        published = self.registry.for_run(result.get("run_id") or job.run_id)
        if published is not None:
            self._settle(job, published)
            return
        self.publish(
            "job.finished",
            job_id=job.id,
            run_id=result.get("run_id"),
            metrics=result.get("metrics"),
            timings=result.get("timings"),
        )
        version, decision = self.gate.judge(result, job_id=job.id)
        self.keeper.refresh_pending()
        self.jobs.finish(
            job.id,
            "succeeded",
            decision=decision.decision,
            adapter_version=version,
            eval_loss=(result.get("metrics") or {}).get("eval_loss"),
            info={**job.info, "gate": decision.to_dict(), "timings": result.get("timings")},
        )

    def _settle(self, job: Job, version) -> None:
        """Finish a job whose run is already in the registry (published before a kill): decide it if the kill
        came before the gate did, and record the outcome. The gate and publishing happen once per run."""
        if version.status == "candidate":
            metrics = dict(version.metrics)
            reference, ref_name = metrics.pop("reference", {}) or {}, metrics.pop("reference_name", "base")
            decision = decide(metrics, reference, self.gate.margin, ref_name)
            if decision.promote:
                self.gate.promote(version.version, decision.reason)
            else:
                self.registry.reject(version.version, decision.reason)
                self.publish("adapter.rejected", version=version.version, reason=decision.reason, job_id=job.id)
            gate = decision.to_dict()
        else:
            gate = {"decision": "reject" if version.status == "rejected" else "promote", "reason": version.reason}
        self.publish(
            "job.finished",
            job_id=job.id,
            run_id=version.run_id,
            version=version.version,
            message=f"run {version.run_id} was already published as v{version.version} before the daemon "
            "stopped; it was not trained or published again",
        )
        self.keeper.refresh_pending()
        self.jobs.finish(
            job.id,
            "succeeded",
            decision=gate["decision"],
            adapter_version=version.version,
            info={**job.info, "gate": gate},
        )


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return (
            f"the disk is full ({err.filename or 'state folder'}): free some space, then retrain; "
            "the live adapter and the job queue are unaffected"
        )
    return str(err) or type(err).__name__
