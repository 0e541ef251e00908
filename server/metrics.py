"""Prometheus metrics for `GET /metrics`: requests, tokens, time to first token, inter-token time, queue depth,
training state. One `CollectorRegistry` per app (no process-wide globals), filled by the API routes' route
class (requests: counted by route template and status, timed to the response headers), a watcher on each
engine channel (tokens and timings) and callbacks read at scrape time (queue depth, training job).
"""

from __future__ import annotations

import time

from penwright.server.engine import Delta, Finished

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, services, app_state):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "penwright_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "penwright_request_seconds",
            "HTTP request time to the response headers",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("penwright_prompt_tokens", "Prompt tokens of finished generations", registry=r)
        self.generation_tokens = Counter("penwright_generation_tokens", "Generated tokens", registry=r)
        self.ttft = Histogram(
            "penwright_time_to_first_token_seconds", "Submit to first text", buckets=LATENCY_BUCKETS, registry=r
        )
        self.step = Histogram(
            "penwright_inter_token_seconds",
            "Time between text deltas of one request (decode step time as a client sees it)",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.finished = Counter("penwright_generations", "Finished generations by reason", ["reason"], registry=r)
        Gauge("penwright_queue_depth", "Requests waiting for the engine", registry=r).set_function(
            lambda: _engine_status(services).get("queue_depth", 0)
        )
        Gauge("penwright_active_requests", "Requests the engine is generating", registry=r).set_function(
            lambda: _engine_status(services).get("active", 0)
        )
        training = Gauge("penwright_training", "Training job figures (0 when none runs)", ["figure"], registry=r)
        for figure in ("running", "step", "total_steps", "loss", "queued"):
            training.labels(figure).set_function(lambda f=figure: _training(app_state).get(f, 0.0))

    def watch(self, channel) -> MeteredChannel:
        return MeteredChannel(channel, self)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _engine_status(services) -> dict:
    engine = services.engine
    return engine.status() if engine is not None and engine.running else {}


def _training(app_state) -> dict:
    daemon = getattr(app_state, "daemon", None)
    jobs = getattr(daemon, "jobs", None)
    if jobs is None:
        return {}
    running = jobs.with_status("running")
    out = {"queued": float(len(jobs.with_status("queued"))), "running": float(bool(running))}
    if running:
        job = running[0]
        out.update(step=float(job.step), total_steps=float(job.total), loss=float(job.loss or 0.0))
    return out


class MeteredChannel:
    """An engine channel that times what passes through it (reads are unchanged)."""

    def __init__(self, channel, metrics: Metrics):
        self._channel, self._m = channel, metrics
        self._t0 = self._last = time.perf_counter()
        self._first = True

    def cancel(self) -> None:
        self._channel.cancel()

    async def aget(self):
        return self._seen(await self._channel.aget())

    async def __aiter__(self):
        async for item in self._channel:
            yield self._seen(item)

    def _seen(self, item):
        now = time.perf_counter()
        if isinstance(item, Delta):
            (self._m.ttft if self._first else self._m.step).observe(now - (self._t0 if self._first else self._last))
            self._first, self._last = False, now
        elif isinstance(item, Finished):
            self._m.prompt_tokens.inc(item.prompt_tokens)
            self._m.generation_tokens.inc(item.completion_tokens)
            self._m.finished.labels(item.finish_reason).inc()
        return item


def metrics_of(app) -> Metrics:
    """The app's Metrics, made on first use (one registry per app)."""
    if getattr(app.state, "metrics", None) is None:
        app.state.metrics = Metrics(app.state.services, app.state)
    return app.state.metrics


def status_of(err: BaseException) -> int:
    """The HTTP status the app's handlers will answer `err` with."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from penwright.errors import PenwrightError
    from penwright.server.services.errors import api_error

    if isinstance(err, RequestValidationError):
        return 400
    if isinstance(err, HTTPException):
        return err.status_code
    if isinstance(getattr(err, "status", None), int):
        return err.status
    return api_error(err).status if isinstance(err, PenwrightError) else 500


def metered_route_class():
    """The API routes' APIRoute: counts and times each request by its route template
    (`/v1/models/{model_id:path}`) and status. Errors go on to the app's handlers (one log line for a 4xx)."""
    from fastapi.routing import APIRoute

    class MeteredRoute(APIRoute):
        def get_route_handler(self):
            handler, path = super().get_route_handler(), self.path

            async def metered(request):
                m, t0, status = metrics_of(request.app), time.perf_counter(), 500
                try:
                    response = await handler(request)
                    status = response.status_code
                    return response
                except Exception as err:
                    status = status_of(err)
                    raise
                finally:
                    m.requests.labels(path, str(status)).inc()
                    m.request_seconds.labels(path).observe(time.perf_counter() - t0)

            return metered

    return MeteredRoute
