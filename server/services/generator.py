"""One generator interface: the local engine or an upstream server, chosen once when the services are composed.

The completion service prepares a request the same way for both (model id -> target, FIM split, lore selection,
persona frame, context fitting); the generator turns the prepared parts into what it runs (a `GenerationRequest`
in the shared prompt format, or the upstream's request body) and answers it. The routers call one handler and
never ask which kind is behind it (vLLM's shape: one engine client behind the OpenAI serving layer).
"""

from __future__ import annotations

from typing import Protocol

from starlette.concurrency import run_in_threadpool

from penwright.errors import ServeError
from penwright.server.services.errors import ApiError


class Generator(Protocol):
    mode: str  # "local" | "proxy"
    engine: object | None  # the local engine (tokenizer routes, metrics), None upstream

    @property
    def context_length(self) -> int: ...
    @property
    def live_adapter(self) -> str | None: ...
    @property
    def running(self) -> bool: ...
    def count_tokens(self, text: str) -> int: ...
    async def ensure_adapter(self, target) -> None: ...
    def check_supported(self, body) -> None: ...
    def completion(self, prepared, req, prefix: str, suffix: str | None, sel, sampling, stop_check) -> None: ...
    def token_ids(self, prepared, req, ids: list[int], sampling, stop_check) -> None: ...
    async def chat(self, prepared, req, messages, budget: int, sampling, stop_check, disconnected) -> None: ...
    async def respond(self, prepared, services, http, body, include_usage: bool): ...
    def sync_live(self, live) -> float: ...
    def tokenizer(self): ...
    def status(self) -> dict: ...
    def close(self) -> None: ...


class LocalGenerator:
    """The in-process engine (server/engine): prompts rendered in the shared prompt format, as training rows are."""

    mode = "local"

    def __init__(self, engine):
        self.engine = engine

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    @property
    def live_adapter(self) -> str | None:
        return self.engine.live

    @property
    def running(self) -> bool:
        return self.engine.running

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    async def ensure_adapter(self, target) -> None:
        """A requested version's adapter is loaded beside the others when needed."""
        if target.version is not None:
            await run_in_threadpool(self.engine.load_adapter, target.adapter, target.version.path)

    def check_supported(self, body) -> None:
        from penwright.server.services.unsupported import refuse_unsupported

        refuse_unsupported(body, body.stream)

    def render(self, prefix: str, suffix: str | None, sel) -> str:
        """The prompt in the shared prompt format (what training rows are built with): the model's own FIM
        sentinels when there is a suffix and the model has them, else the raw prefix; the lore preamble inside."""
        from penwright.trainer.prompt_format import completion_prompt

        lore = sel.text if sel is not None else None
        return completion_prompt(prefix, suffix, fim=self.engine.fim_style, lore=lore)

    def completion(self, prepared, req, prefix: str, suffix: str | None, sel, sampling, stop_check) -> None:
        prepared.request = self._request(self.render(prefix, suffix, sel), req, prepared.target, sampling, stop_check)

    def token_ids(self, prepared, req, ids: list[int], sampling, stop_check) -> None:
        from penwright.server.services.completion import check_token_ids

        check_token_ids(ids, len(self.engine.backend.tokenizer))
        prepared.request = self._request(list(ids), req, prepared.target, sampling, stop_check)

    async def chat(self, prepared, req, messages, budget: int, sampling, stop_check, disconnected) -> None:
        from penwright.server.services import chat_fit

        prompt = await chat_fit.fit_while_connected(
            messages, budget, self.engine.chat_prompt, self.count_tokens, disconnected
        )
        prepared.request = self._request(prompt, req, prepared.target, sampling, stop_check)

    @staticmethod
    def _request(prompt, req, target, sampling, stop_check):
        from penwright.server.engine import GenerationRequest

        return GenerationRequest(prompt, sampling, target.adapter, req.penwright.adapter_scale, stop_check=stop_check)

    async def respond(self, prepared, services, http, body, include_usage: bool):
        from penwright.server.services.logprobs import Reporting
        from penwright.server.services.responses import respond

        return await respond(prepared, services, http, body.stream, include_usage, Reporting.of(body, prepared.kind))

    def sync_live(self, live) -> float:
        from penwright.server.services.models import adapter_name

        wanted = adapter_name(live.version) if live is not None else None
        if wanted == self.engine.live:
            return 0.0
        return self.engine.set_live(wanted, live.path if live is not None else None)

    def tokenizer(self):
        return self.engine

    def status(self) -> dict:
        engine = self.engine.status()
        return {
            "mode": self.mode,
            "engine": engine,
            "backend": engine.get("backend"),
            "queue_depth": engine["queue_depth"],
        }

    def close(self) -> None:
        self.engine.stop()


class UpstreamGenerator:
    """Proxy mode (server/proxy.py): vLLM, llama.cpp or Ollama generates; the upstream decides what it supports."""

    mode = "proxy"
    engine = None

    def __init__(self, upstream):
        self.upstream = upstream

    @property
    def context_length(self) -> int:
        return self.upstream.context_length

    @property
    def live_adapter(self) -> str | None:
        return self.upstream.live_adapter

    @property
    def running(self) -> bool:
        return True

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1 if text else 0  # no tokenizer here: a rough English estimate

    async def ensure_adapter(self, target) -> None:
        return None  # the upstream loads what `model`/`lora` name

    def check_supported(self, body) -> None:
        return None

    def completion(self, prepared, req, prefix: str, suffix: str | None, sel, sampling, stop_check) -> None:
        prepared.upstream_body = self.upstream.completion_body(req, prefix, suffix, sel)

    def token_ids(self, prepared, req, ids: list[int], sampling, stop_check) -> None:
        raise ApiError(400, "token-id prompts are not supported in proxy mode; send text", "invalid_value", "prompt")

    async def chat(self, prepared, req, messages, budget: int, sampling, stop_check, disconnected) -> None:
        prepared.upstream_body = self.upstream.chat_body(req, messages)

    async def respond(self, prepared, services, http, body, include_usage: bool):
        return await self.upstream.respond(prepared, http, body.stream, services.model_name)

    def sync_live(self, live) -> float:
        if live is not None:
            self.upstream.publish(live)
        return 0.0

    def tokenizer(self):
        raise ApiError(
            400,
            "Tokenizing needs the local engine; in proxy mode ask the upstream server.",
            "unsupported_in_proxy_mode",
        )

    def status(self) -> dict:
        return {"mode": self.mode, "upstream": self.upstream.status()}

    def close(self) -> None:
        self.upstream.close()


class NoGenerator:
    """Services composed without a model (lore-only apps in tests, a daemon still starting): every generation
    answers 503 with what to do."""

    mode = "none"
    engine = None
    context_length = 2048
    live_adapter = None
    running = False

    def _unavailable(self, *args, **kwargs):
        raise ServeError("No model is loaded to generate with.", "Start the daemon with `penwright serve`.")

    count_tokens = completion = token_ids = tokenizer = _unavailable

    async def ensure_adapter(self, target) -> None:
        self._unavailable()

    def check_supported(self, body) -> None:
        return None

    async def chat(self, *args, **kwargs) -> None:
        self._unavailable()

    async def respond(self, *args, **kwargs):
        self._unavailable()

    def sync_live(self, live) -> float:
        return 0.0

    def status(self) -> dict:
        return {"mode": self.mode}

    def close(self) -> None:
        return None


def generator_for(engine, upstream) -> Generator:
    """The one choice between the local engine and an upstream server."""
    if upstream is not None:
        return UpstreamGenerator(upstream)
    if engine is not None:
        return LocalGenerator(engine)
    return NoGenerator()
