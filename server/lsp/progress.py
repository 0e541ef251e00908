"""Daemon events -> the editor: training as `window/workDoneProgress`, promotions and failures as showMessage.

One background task per server follows `/api/events` (server-sent events),
reconnecting with `Last-Event-ID` when the daemon restarts. It also sends
`penwright/status` notifications ({adapter, training}) for status bars.
"""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types

from penwright.server.lsp.daemon import DaemonError, DaemonUnavailable

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "penwright/status"
END_TYPES = {"job.finished": "finished", "job.failed": "failed", "job.cancelled": "cancelled"}


class Bridge:
    """State of the event bridge: the last event seen and the open progress tokens by job."""

    def __init__(self, ls):
        self.ls = ls
        self.last_id = 0
        self.tokens: dict[object, str] = {}
        self.training: dict | None = None

    async def run(self) -> None:
        """Follow the events. Only the first connection may start the daemon: a daemon stopped later (by the
        author, or at shutdown) is started again by the next request that needs it, not by this loop."""
        delay, start = 0.5, True
        while True:
            try:
                await self._initial_status(start)
                start = False
                async for event in self.ls.daemon.events(self.last_id):
                    delay = 0.5
                    self.last_id = max(self.last_id, int(event.get("id") or 0))
                    await self.handle(event)
            except asyncio.CancelledError:
                raise
            except (DaemonUnavailable, DaemonError) as err:
                start = False
                log.info("events: %s; retrying in %.1fs", err, delay)
            except Exception as err:  # a dropped stream mid-read; the daemon may be restarting
                log.info("events stream ended: %r", err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _initial_status(self, start: bool = False) -> None:
        st = await self.ls.daemon.request("GET", "/api/status", start=start)
        if isinstance(st, dict):
            self.ls.live_adapter = st.get("adapter") if isinstance(st.get("adapter"), str) else None
        self.notify()

    def notify(self) -> None:
        self.ls.protocol.notify(
            STATUS_NOTIFICATION,
            {"adapter": self.ls.live_adapter, "model": self.ls.settings.model, "training": self.training},
        )

    async def handle(self, event: dict) -> None:
        kind = event.get("type")
        job = event.get("job_id")
        if kind == "job.started":
            await self._begin(job)
        elif kind == "job.progress":
            await self._report(job, event)
        elif kind in END_TYPES:
            await self._end(job, event, END_TYPES[kind])
        elif kind == "adapter.promoted":
            version = event.get("version")
            self.ls.live_adapter = event.get("model") or f"v{version}"
            self.ls.shown.clear()
            self.ls.tell(f"Penwright: adapter v{version} is now live ({_why(event)}).")
            self.notify()
        elif kind == "adapter.rolled_back":
            self.ls.shown.clear()
            self.ls.tell(f"Penwright: rolled back; adapter v{event.get('version')} is live again.")
            await self._initial_status()
        elif kind == "gate" and event.get("decision") == "reject":
            self.ls.tell(f"Penwright: the new adapter was not promoted ({_why(event)}).")
        elif kind == "lore.indexed":
            self.ls.lore_names.fetched_at = 0.0
        elif kind == "error":
            self.ls.tell(f"Penwright: {event.get('message', 'error in the daemon')}", types.MessageType.Warning)

    async def _begin(self, job) -> None:
        self.training = {"job": job, "step": 0, "total": None}
        self.notify()
        if not _client_supports_progress(self.ls) or job in self.tokens:
            return
        token = f"penwright-train-{job}-{self.last_id}"
        self.tokens[job] = token
        try:
            await asyncio.wait_for(self.ls.work_done_progress.create_async(token), 10)
        except Exception as err:
            log.info("client refused a progress token: %r", err)
        self.ls.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(
                title="Penwright: training", message=f"job {job}", percentage=0, cancellable=True
            ),
        )

    async def _report(self, job, event: dict) -> None:
        if job not in self.tokens:
            await self._begin(job)
        step, total, phase = event.get("step"), event.get("total"), event.get("phase")
        counted = isinstance(step, int) and isinstance(total, int) and total > 0
        if counted or not self.training:
            self.training = {"job": job, "step": step, "total": total, "loss": event.get("loss")}
        if phase:
            self.training["phase"] = phase
        self.notify()
        token = self.tokens.get(job)
        if token is None:
            return
        pct = min(100, int(100 * step / total)) if counted else None
        msg = f"step {step}/{total}" if counted else str(phase or "working")
        if phase and counted:
            msg = f"{phase}: {msg}"
        if isinstance(event.get("loss"), (int, float)):
            msg += f" · loss {event['loss']:.3f}"
        if isinstance(event.get("eta_s"), (int, float)):
            msg += f" · {event['eta_s']:.0f}s left"
        self.ls.work_done_progress.report(token, types.WorkDoneProgressReport(message=msg, percentage=pct))

    async def _end(self, job, event: dict, how: str) -> None:
        token = self.tokens.pop(job, None)
        self.training = None
        self.notify()
        if token is not None:
            self.ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"training {how}"))
        if how == "failed":
            self.ls.tell(
                f"Penwright: training job {job} failed: "
                f"{event.get('error') or event.get('message') or 'see the daemon log'}",
                types.MessageType.Error,
            )


def _why(event: dict) -> str:
    return str(event.get("reason") or event.get("message") or "no reason given")


def _client_supports_progress(ls) -> bool:
    window = getattr(ls.client_capabilities, "window", None)
    return bool(window and window.work_done_progress)


def start_event_bridge(ls) -> None:
    old = getattr(ls, "bridge_task", None)
    if old is not None:
        old.cancel()
    ls.bridge = Bridge(ls)
    ls.bridge_task = ls.spawn(ls.bridge.run())


def register(ls) -> None:
    """The bridge itself starts on `initialized` (config.py); here: the Cancel button of a training progress."""

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    async def cancel_from_progress(ls, params: types.WorkDoneProgressCancelParams) -> None:
        bridge = ls.bridge
        job = next((j for j, t in bridge.tokens.items() if t == params.token), None) if bridge else None
        if job is None:
            return
        try:
            await ls.daemon.request("POST", f"/api/jobs/{job}/cancel", start=False)
        except (DaemonUnavailable, DaemonError) as err:
            ls.tell(f"Penwright: could not cancel training job {job}: {err}", types.MessageType.Error)
