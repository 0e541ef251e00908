"""`logprobs`, `top_logprobs` and `echo`: the token log-probabilities of a finished completion, in OpenAI's shapes.

After generation the engine scores the exact ids it served (prompt as the model saw it, then the generated
ids) in one forward pass: raw log-probabilities of the model with the request's adapter, before temperature
and penalties (what vLLM reports by default). Only the tokens that make up the returned text are reported:
a stop string cut inside a token ends the list at that token.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from penwright.server.protocol import ChatLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob


@dataclass(frozen=True)
class Reporting:
    """What a request asked to get back besides the text."""

    logprobs: int | None = None  # alternatives per position (0 = just the chosen token's); None = no logprobs
    echo: bool = False
    prompt: str | list[int] = ""  # the prompt as the client sent it, for echo

    @classmethod
    def of(cls, body, kind: str) -> Reporting:
        if kind == "chat":
            return cls(logprobs=(body.top_logprobs or 0) if body.logprobs else None)
        return cls(logprobs=body.logprobs, echo=body.echo, prompt=body.prompt)

    @property
    def wanted(self) -> bool:
        return self.logprobs is not None or self.echo

    def echo_text(self, decode) -> str:
        if not self.echo:
            return ""
        return self.prompt if isinstance(self.prompt, str) else decode(list(self.prompt))


@dataclass
class Scored:
    ids: list[int]  # the reported tokens
    logprobs: list[float | None]
    tops: list[list[tuple[int, float]] | None]


def served_prompt_ids(engine, prompt, truncated: int) -> list[int]:
    """The prompt ids the engine served (as Engine._fit made them: left-truncated; an empty prompt starts at EOS)."""
    ids = engine.encode(prompt) if isinstance(prompt, str) else list(prompt)
    ids = ids[truncated:]
    return ids or sorted(engine.backend.eos_ids)[:1] or [0]


def reported_ids(decode, ids: tuple[int, ...], text: str) -> list[int]:
    """The generated ids whose text starts inside `text` (the returned text, after stop strings were cut)."""
    out: list[int] = []
    for i in range(len(ids)):
        if len(decode(list(ids[:i]))) >= len(text):
            break
        out.append(ids[i])
    return out


def echo_span(decode, prompt_ids: list[int], echo: str) -> int:
    """How many trailing prompt ids spell the echoed prompt (all of them when the prompt was not rewritten by
    lore or FIM); 0 when no tail does."""
    for k in range(len(prompt_ids), 0, -1):
        if decode(prompt_ids[-k:]) == echo:
            return k
    return 0


async def score(engine, prompt_ids: list[int], gen: list[int], echo_n: int, adapter, scale, top: int) -> Scored:
    """Logprobs of the last `echo_n` prompt ids and of `gen`; the very first token of a sequence has none."""
    ids = prompt_ids + gen
    last = min(echo_n + len(gen), len(ids) - 1)
    rows = await run_in_threadpool(engine.score, ids, last, adapter, scale, top) if last > 0 else []
    missing = echo_n + len(gen) - last  # the first token of the sequence echoed: nothing predicts it
    reported = ids[len(ids) - echo_n - len(gen) :]
    return Scored(reported, [None] * missing + [lp for lp, _ in rows], [None] * missing + [t for _, t in rows])


def offsets(decode, ids: list[int], start: int = 0) -> list[int]:
    return [start + len(decode(ids[:i])) for i in range(len(ids))]


def completion_logprobs(decode, scored: Scored, echo_n: int, echo_len: int) -> CompletionLogprobs:
    """The `choices[0].logprobs` of /v1/completions; text offsets count from the start of the returned text."""
    prompt_part, gen_part = scored.ids[:echo_n], scored.ids[echo_n:]
    text_offset = offsets(decode, prompt_part) + offsets(decode, gen_part, echo_len)
    tops = [None if t is None else {decode([i]): lp for i, lp in t} for t in scored.tops]
    return CompletionLogprobs(
        tokens=[decode([i]) for i in scored.ids],
        token_logprobs=scored.logprobs,
        top_logprobs=tops,
        text_offset=text_offset,
    )


def chat_logprobs(decode, scored: Scored) -> ChatLogprobs:
    """The `choices[0].logprobs` of /v1/chat/completions."""

    def top(i: int, lp: float) -> TopLogprob:
        text = decode([i])
        return TopLogprob(token=text, logprob=lp, bytes=list(text.encode("utf-8")))

    content = []
    for i, lp, alts in zip(scored.ids, scored.logprobs, scored.tops):
        first = top(i, lp if lp is not None else 0.0)
        content.append(TokenLogprob(**first.model_dump(), top_logprobs=[top(a, alp) for a, alp in alts or []]))
    return ChatLogprobs(content=content)
