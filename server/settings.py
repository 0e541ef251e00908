"""Settings schemas of the daemon: HTTP server, upstream proxy, persona, watcher, retrain policy."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PERSONA_TEMPLATE = (
    "# Role\nYou are {author}'s co-writer, writing in their voice.\n\n"
    "# Instructions\nMatch their vocabulary, rhythm, dialogue and imagery. Never explain; write prose.\n\n"
    "# Input\n{input}"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(_Strict):
    host: str = Field("127.0.0.1", description="Bind address. Anything but loopback requires api_key.")
    port: int = Field(8765, ge=1, le=65535)
    api_key: str | None = Field(None, description="Bearer key clients must send; required off loopback.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (e.g. http://localhost:3000) "
        "allowed to call the API and change state; empty = only the daemon's own pages.",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body of the /v1 and lore routes (other /api routes: 64 KiB); larger ones get 413.",
    )
    model_name: str = Field("penwright", description="Model id clients ask for; versions are penwright@vN.")
    max_batch: int = Field(
        8,
        ge=1,
        le=256,
        description="Requests of one adapter decoded together per forward "
        "pass (torch); 1 = one request per step, in turn.",
    )


class UpstreamSettings(_Strict):
    url: str = Field(description="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    kind: Literal["vllm", "llamacpp", "ollama", "openai"] = "openai"
    model: str | None = Field(None, description="Model name to ask upstream for (default: its first model).")
    api_key: str | None = None
    publish_adapters: bool = Field(True, description="Push each promoted adapter upstream where supported.")
    timeout_seconds: float = Field(120.0, gt=0)


class PersonaSettings(_Strict):
    enabled: bool = Field(False, description="Wrap chat requests in the persona frame below.")
    author: str = Field("the author", description="Name used in the persona frame.")
    template: str = DEFAULT_PERSONA_TEMPLATE


class WatchSettings(_Strict):
    enabled: bool = True
    quiet_seconds: float = Field(2.0, ge=0, description="Debounce: wait this long after the last save.")


class RetrainPolicy(_Strict):
    enabled: bool = Field(True, description="Retrain in the background when enough has changed.")
    min_new_words: int = Field(2000, ge=1, description="New or changed words since the live adapter's dataset.")
    idle_seconds: float = Field(120.0, ge=0, description="How long the author must have been idle.")
    max_per_hour: int = Field(2, ge=1)
    warm_start: bool = True
    standby_child: bool = Field(
        True,
        description="Keep the next training process started, its imports done, while none runs: a retrain "
        "starts seconds sooner (12.7 s of a 47.9 s save-to-live on an H200) for a few hundred MB of idle memory.",
    )
    replay_share: float = Field(0.3, ge=0, le=1, description="Share of older passages mixed into a warm retrain.")
    gate_margin: float = Field(0.02, ge=0, description="A candidate may be this much worse (relative) and still win.")
    gate_samples: int = Field(
        16,
        ge=4,
        le=256,
        description="Continuations the gate generates per model for its "
        "Delta and guard measures (README: The voice says what 16 costs).",
    )
    pause_while_typing: bool = Field(
        False,
        description="Stop a running training job while completions are being "
        "requested (the author is typing) and continue it after pause_quiet_seconds without one.",
    )
    pause_quiet_seconds: float = Field(
        5.0, gt=0, description="With pause_while_typing: idle seconds before training continues."
    )
