"""Settings of the language server: from `initializationOptions` and `workspace/didChangeConfiguration`.

Defaults live here. The VS Code extension declares the same keys under
`penwright.*` in extension/package.json; tests/server/lsp/test_settings.py
checks that the two agree, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

CHARS_PER_TOKEN = 4  # the thin server has no tokenizer: budgets are estimated at ~4 characters a token
# Keys under penwright.* that only the editor extension uses (how to start this server); ignored here.
CLIENT_ONLY_KEYS = frozenset({"serverCommand", "pythonPath", "languages", "trace"})


class LspSettings(BaseModel):
    """Keys are camelCase on the wire (`prefixTokens`), as VS Code settings are."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, alias_generator=to_camel, populate_by_name=True)

    project: str = Field(
        "", description="The writing project's folder; empty = search upward from the workspace or file."
    )
    inline_enabled: bool = Field(True, description="Offer ghost-text completions in the author's voice.")
    prefix_tokens: int = Field(
        768, ge=16, le=8192, description="Text before the cursor sent as context (tokens, ~4 characters each)."
    )
    suffix_tokens: int = Field(128, ge=0, le=4096, description="Text after the cursor sent as context (tokens).")
    sentence_tokens: int = Field(
        40, ge=1, le=1024, description="Longest completion while typing (to the end of the sentence)."
    )
    paragraph_tokens: int = Field(
        160, ge=1, le=4096, description="Longest completion when asked for explicitly (a paragraph)."
    )
    debounce_ms: int = Field(
        150,
        ge=0,
        le=5000,
        description="Wait this long after a keystroke before asking the daemon (typing cancels the wait).",
    )
    temperature: float = Field(0.8, ge=0, le=2, description="Sampling temperature of completions.")
    lore: bool = Field(True, description="Inject lore (characters, places) into completions.")
    model: str = Field("penwright", description="Model id: penwright (live adapter), penwright@vN, or penwright:base.")
    daemon_url: str = Field(
        "", description="Daemon base URL; empty = .penwright/daemon.json, then penwright.yaml's server host/port."
    )
    auto_start_daemon: bool = Field(True, description="Start `penwright serve` for the project if no daemon answers.")
    request_timeout_seconds: float = Field(60.0, gt=0, le=3600, description="Longest wait for one completion.")
    log_level: Literal["error", "warning", "info", "debug"] = "info"


def parse_settings(raw: Any, base: LspSettings | None = None) -> tuple[LspSettings, list[str]]:
    """Merge `raw` (a dict, possibly wrapped in {"penwright": {...}}) over `base`.

    Returns the new settings and a list of problems; bad keys are reported and
    ignored, never fatal: a typo in the editor's settings must not stop completions.
    """
    current = base or LspSettings()
    if raw is None:
        return current, []
    if isinstance(raw, dict) and isinstance(raw.get("penwright"), dict):
        raw = raw["penwright"]
    if not isinstance(raw, dict):
        return current, [f"settings must be an object, got {type(raw).__name__}"]
    data = current.model_dump(by_alias=True)
    problems: list[str] = []
    for key, value in raw.items():
        if value is None or key in CLIENT_ONLY_KEYS:
            continue
        trial = {**data, key: value}
        try:
            LspSettings.model_validate(trial)
        except ValidationError as err:
            problems.append(f"penwright.{key}: {err.errors()[0]['msg']} (kept {data.get(key, 'nothing')!r})")
            continue
        data = trial
    return LspSettings.model_validate(data), problems
