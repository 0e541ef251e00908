"""The completion service: OpenAI requests -> prepared requests for the generator, responses back.

What it adds on the way, the same for the local engine and an upstream server: model id -> adapter, FIM
sentinel translation, lore selection, the persona frame for chat, prompt fitting to the context, and
prose-aware stopping. The generator (`generator.py`, chosen once) renders and runs what is prepared. The
router only translates HTTP; the streaming and JSON shapes are in `responses.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from penwright.server.engine import BASE, GenerationRequest, SamplingParams
from penwright.server.fim import fit_fim, parse_fim
from penwright.server.protocol import ChatCompletionRequest, CompletionRequest, LoreUsed
from penwright.server.services import models, prose
from penwright.server.services.errors import ApiError
from penwright.trainer.prompt_format import with_lore_system

log = logging.getLogger(__name__)

FIM_OVERHEAD_TOKENS = 8  # sentinels and slack
DEFAULT_CHAT_MAX_TOKENS = 512


@dataclass
class Prepared:
    """A request made ready: the prompt and sampling for the engine (or the body for the upstream)."""

    kind: str  # "completion" | "chat"
    request: GenerationRequest | None = None
    upstream_body: dict | None = None
    lore: list[LoreUsed] = field(default_factory=list)
    lore_tokens: int = 0
    fim: bool = False
    target: models.Target | None = None


def check_token_ids(ids: list[int], vocab_size: int) -> None:
    """Token-id prompts are checked here, so an id the model has no row for never reaches a batch."""
    if not ids:
        raise ApiError(
            400, "prompt is an empty list of token ids; send at least one id, or text.", "invalid_value", "prompt"
        )
    bad = next((i for i, t in enumerate(ids) if t >= vocab_size), None)
    if bad is not None:
        raise ApiError(
            400,
            f"prompt[{bad}] is token id {ids[bad]}, which this model does not have: ids go from 0 to {vocab_size - 1}.",
            "invalid_value",
            f"prompt.{bad}",
        )


class CompletionService:
    def __init__(self, services):
        self.services = services

    # ---- shared pieces -----------------------------------------------------------------------------
    @property
    def generator(self):
        return self.services.generator

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    @property
    def context_length(self) -> int:
        return self.generator.context_length

    async def target(self, model: str) -> models.Target:
        """Resolve `model`; the generator loads a requested version's adapter when it needs to."""
        t = models.resolve(model, self.services.model_name, self.services.registry)
        await self.generator.ensure_adapter(t)
        return t

    @staticmethod
    def sampling(req, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            top_k=max(req.top_k, 0),
            min_p=req.min_p,
            repetition_penalty=req.repetition_penalty,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            stop=tuple(req.stop or ()),
        )

    def check_max_tokens(self, max_tokens: int) -> None:
        ctx = self.context_length
        if max_tokens >= ctx:
            raise ApiError(
                400,
                f"max_tokens={max_tokens} does not fit the model's {ctx}-token context; "
                f"ask for at most {ctx // 2} (the prompt needs room too).",
                "invalid_value",
                "max_tokens",
            )

    async def select_lore(self, use: bool, prefix: str, suffix: str, chapter: int | None):
        """The lore Selection for this passage, or None (no lore, disabled, or nothing matched)."""
        index = self.services.lore
        if index is None or not use or not (prefix or suffix).strip():
            return None
        try:
            sel = await run_in_threadpool(
                index.select,
                prefix,
                suffix=suffix,
                chapter=chapter,
                budget_tokens=self.services.lore_budget_tokens,
                count_tokens=self.count_tokens,
            )
        except Exception as err:  # lore must never break a completion
            log.warning("lore selection failed, continuing without lore: %s", err)
            return None
        return sel if sel is not None and sel.text else None

    @staticmethod
    def lore_meta(sel) -> tuple[list[LoreUsed], int]:
        if sel is None:
            return [], 0
        used = [LoreUsed(id=str(e.id), name=str(e.name), tokens=int(e.tokens)) for e in sel.entries]
        return used, int(sel.tokens)

    # ---- /v1/completions ---------------------------------------------------------------------------
    async def prepare_completion(self, req: CompletionRequest) -> Prepared:
        target = await self.target(req.model)
        max_tokens = req.max_tokens or 16
        self.check_max_tokens(max_tokens)
        stop_check = prose.stop_check(req.penwright.stop_at)
        if isinstance(req.prompt, list):  # token ids: sent as they are
            prepared = Prepared("completion", target=target)
            self.generator.token_ids(prepared, req, req.prompt, self.sampling(req, max_tokens), stop_check)
            return prepared
        prefix, suffix, fim = self.split_fim(req)
        sel = await self.select_lore(req.penwright.lore, prefix, suffix or "", req.penwright.chapter)
        lore, lore_tokens = self.lore_meta(sel)
        budget = self.context_length - max_tokens - lore_tokens - FIM_OVERHEAD_TOKENS
        prefix, suffix_fit = await run_in_threadpool(fit_fim, prefix, suffix or "", budget, self.count_tokens)
        prepared = Prepared("completion", lore=lore, lore_tokens=lore_tokens, fim=fim, target=target)
        sampling = self.sampling(req, max_tokens)
        self.generator.completion(prepared, req, prefix, suffix_fit if fim else None, sel, sampling, stop_check)
        return prepared

    @staticmethod
    def split_fim(req: CompletionRequest) -> tuple[str, str | None, bool]:
        """(prefix, suffix, is_fim) from the `suffix` field or FIM sentinels inside `prompt`."""
        if req.suffix is not None:
            return req.prompt, req.suffix, True
        parts = parse_fim(req.prompt)
        if parts is not None:
            return parts.prefix, parts.suffix, True
        return req.prompt, None, False

    # ---- /v1/chat/completions ----------------------------------------------------------------------
    async def prepare_chat(
        self, req: ChatCompletionRequest, disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> Prepared:
        """`disconnected` (the request's `is_disconnected`): fitting a long chat stops when its client leaves."""
        target = await self.target(req.model)
        max_tokens = (
            req.max_completion_tokens or req.max_tokens or min(DEFAULT_CHAT_MAX_TOKENS, self.context_length // 2)
        )
        self.check_max_tokens(max_tokens)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        messages = self.apply_persona(messages, target)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        sel = await self.select_lore(req.penwright.lore, last_user, "", req.penwright.chapter)
        lore, lore_tokens = self.lore_meta(sel)
        if sel is not None:
            messages = with_lore_system(messages, sel.text)
        prepared = Prepared("chat", lore=lore, lore_tokens=lore_tokens, target=target)
        stop_check = prose.stop_check(req.penwright.stop_at)
        budget = self.context_length - max_tokens
        await self.generator.chat(
            prepared, req, messages, budget, self.sampling(req, max_tokens), stop_check, disconnected
        )
        return prepared

    def apply_persona(self, messages: list[dict], target: models.Target) -> list[dict]:
        """Wrap the last user message in the persona frame (role, instructions, input) when enabled."""
        persona = self.services.persona
        if not persona.enabled or target.adapter == BASE:
            return messages
        out = [dict(m) for m in messages]
        for m in reversed(out):
            if m["role"] == "user":
                m["content"] = persona.template.replace("{author}", persona.author).replace("{input}", m["content"])
                break
        return out
