"""Request and response models of the OpenAI-compatible API (plus Penwright's extra fields).

Requests accept unknown fields (clients send many: `user`, `logit_bias`, `stream_options`...):
they are kept in `model_extra`, logged by the router and otherwise ignored. Known fields are strict
(`true` is not a number, `"3"` is not an integer) and bounded so that every value that passes can be
served: token ids are checked against the vocabulary in the service, sampling values that would
overflow to NaN are refused here, and text must be valid Unicode (no lone surrogates).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

DEFAULT_MODEL = "penwright"
MAX_TOKEN_ID = 2**31 - 1
MIN_TEMPERATURE = 1e-3  # below this (but above 0) logits / temperature overflow to inf and sampling to NaN
MIN_TOP_P = 1e-3


def _lone_surrogate(value, path: str = "") -> str | None:
    """The path of the first string (key or value) in `value` holding half a UTF-16 pair, or None."""
    if isinstance(value, str):
        return path or "body" if any("\ud800" <= c <= "\udfff" for c in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        found = _lone_surrogate(key, where) if isinstance(key, str) else None
        found = found or _lone_surrogate(item, where)
        if found:
            return found
    return None


class StrictRequest(BaseModel):
    """Strict, unknown fields kept, and no lone surrogates anywhere (tokenizers cannot encode them, nor can a
    UTF-8 file). The base of every request body the daemon reads."""

    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data):
        where = _lone_surrogate(data) if isinstance(data, dict) else None
        if where:
            where = where.encode("utf-8", "backslashreplace").decode("utf-8")
            raise ValueError(
                f"{where} holds a lone UTF-16 surrogate (like \\ud800), which is not text; send valid Unicode"
            )
        return data


class PenwrightOptions(StrictRequest):
    """The extra `penwright` request field."""

    chapter: int | None = Field(
        None, ge=0, le=1_000_000, description="Chapter being written: lore with progressions applies up to it."
    )
    stop_at: Literal["sentence", "paragraph"] | None = Field(
        None, description="Stop at the first sentence or paragraph end."
    )
    lore: StrictBool = Field(True, description="Inject lore (when the project has lore).")
    adapter_scale: float | None = Field(
        None, ge=0.0, le=2.0, description="Multiply the adapter's strength (0.7 softens it)."
    )


class StreamOptions(StrictRequest):
    include_usage: StrictBool = False


class _Sampling(StrictRequest):
    model: str = Field(DEFAULT_MODEL, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(
        -1, ge=-1, description="Sample from the k most likely tokens only; -1 or 0 = all (vLLM's top_k)."
    )
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Drop tokens below min_p x the top token's probability.")
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, ge=0.01, le=3.0)
    penwright: PenwrightOptions = Field(default_factory=PenwrightOptions)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 8:
            raise ValueError("at most 8 stop sequences")
        return [s for s in stops if s]

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v):
        if 0 < v < MIN_TEMPERATURE:
            raise ValueError(f"use 0 for greedy decoding, or at least {MIN_TEMPERATURE}")
        return v

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, v):
        if v < MIN_TOP_P:
            raise ValueError(f"top_p must be at least {MIN_TOP_P} (1.0 turns it off)")
        return v


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]] = Field(
        "", description="Text, a list with one text, or token ids (each from 0 to the vocabulary size - 1)."
    )
    suffix: str | None = None
    max_tokens: int | None = Field(16, ge=1)
    echo: StrictBool = False
    logprobs: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Also return the log-probabilities of the tokens, "
        "with this many most likely alternatives at each position.",
    )

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list) and v and isinstance(v[0], str):
            if len(v) != 1:
                raise ValueError("send one prompt per request (a list of prompts is not supported)")
            return v[0]
        return v


class ContentPart(StrictRequest):
    """An OpenAI content part: `{"type": "text", "text": ...}` is read; other types (images...) are ignored."""

    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(StrictRequest):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """Content as plain text (OpenAI content parts: the `text` ones, joined)."""
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: StrictBool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


# ---- responses ----------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LoreUsed(BaseModel):
    id: str
    name: str
    tokens: int


class PenwrightMeta(BaseModel):
    """The extra `penwright` response field: what this response was made with."""

    adapter: str  # served model id: penwright@v7, penwright:base, or the upstream model in proxy mode
    lore: list[LoreUsed] = Field(default_factory=list)
    lore_tokens: int = 0
    truncated_tokens: int = 0


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists over the returned tokens."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    penwright: PenwrightMeta | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: str | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    penwright: PenwrightMeta | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    penwright: PenwrightMeta | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0  # unix time: the adapter version's publication, or the base model's files
    owned_by: str = "penwright"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None  # context length in tokens, as vLLM reports it
    penwright: dict | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeRequest(StrictRequest):
    """vLLM's `POST /tokenize`: a prompt, or chat messages rendered with the model's chat template."""

    model: str = Field(DEFAULT_MODEL, max_length=256)
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    add_special_tokens: StrictBool = False  # accepted for vLLM's clients; Penwright's prompts carry their own
    return_token_strs: StrictBool = False


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(StrictRequest):
    model: str = Field(DEFAULT_MODEL, max_length=256)
    tokens: list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]]


class DetokenizeResponse(BaseModel):
    prompt: str


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
