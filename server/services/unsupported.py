"""Request fields Penwright cannot honour: a 400 that says so, instead of a 200 that silently ignored them.

Offered `tools` are honoured: with `tool_choice` "auto" (the default) or "none" a model may answer in plain
text, and Penwright's always does (Continue's agent and CLI offer tools with every chat request). Forcing a
call (`tool_choice` "required" or a named function) cannot be honoured. Checked for the local engine only;
in proxy mode the upstream server gets the fields and decides.
"""

from __future__ import annotations

from penwright.server.services.errors import ApiError

WHY = {
    "tool_choice": "Penwright writes prose and does not call tools (offered tools are fine with tool_choice "
    '"auto" or "none")',
    "functions": "Penwright writes prose and does not call functions",
    "function_call": "Penwright writes prose and does not call functions",
    "response_format": 'Penwright cannot constrain output to JSON or a schema (only {"type": "text"})',
    "best_of": "one completion is generated per request (best_of must be 1)",
    "logit_bias": "logit_bias is not applied by Penwright's sampler",
    "guided_json": "Penwright cannot constrain output to a schema",
    "guided_regex": "Penwright cannot constrain output to a pattern",
    "guided_choice": "Penwright cannot constrain output to choices",
    "guided_grammar": "Penwright cannot constrain output to a grammar",
}


def _honoured(name: str, value) -> bool:
    """Values that ask for nothing beyond what we do anyway."""
    if value is None or value == [] or value == {}:
        return True
    if name == "tool_choice":
        return value in ("none", "auto")
    if name == "response_format":
        return isinstance(value, dict) and value.get("type") == "text"
    if name == "best_of":
        return value == 1
    return False


def refuse_unsupported(body, stream: bool) -> None:
    """Raise a 400 naming the first field of `body` (a completions or chat request) we cannot honour."""
    extra = body.model_extra or {}
    for name, why in WHY.items():
        if name in extra and not _honoured(name, extra[name]):
            raise ApiError(400, f"`{name}` is not supported: {why}. Remove the field.", "unsupported_parameter", name)
    if stream and getattr(body, "logprobs", None) not in (None, False):
        raise ApiError(
            400,
            "`logprobs` with `stream: true` is not supported: send `stream: false` to get log-probabilities.",
            "unsupported_parameter",
            "logprobs",
        )
