"""Fill-in-the-middle: recognise the FIM prompts clients send and rewrite them in the model's own format.

Continue.dev's `provider: openai` autocomplete sends no `suffix`: it builds the FIM
prompt itself, either generic (`<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>`)
or Qwen-style (`<|fim_prefix|>...<|fim_suffix|>...<|fim_middle|>`). CodeLlama's
`<PRE> {prefix} <SUF>{suffix} <MID>` is recognised too. We parse any of these
back into (prefix, suffix) and render them with the sentinels of the model we serve.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from penwright.trainer.prompt_format import FIM_STYLES, completion_prompt, fim_style

STYLES = FIM_STYLES  # the sentinel styles, from the shared prompt format


@dataclass(frozen=True)
class FimParts:
    prefix: str
    suffix: str
    style: str | None  # the sentinel style found in the prompt, None when `suffix` came as a field


def parse_fim(prompt: str) -> FimParts | None:
    """(prefix, suffix) when `prompt` is a FIM sentinel prompt in any known style, else None.

    Text before the prefix sentinel (Continue puts nothing there; some clients put a
    file header) is kept as part of the prefix.
    """
    for style, (pre, suf, mid) in STYLES.items():
        p = prompt.find(pre.strip())
        s = prompt.find(suf.strip(), p + 1) if p >= 0 else -1
        m = prompt.find(mid.strip(), s + 1) if s >= 0 else -1
        if p < 0 or s < 0 or m < 0:
            continue
        head = prompt[:p]
        prefix = prompt[p + len(pre.strip()) : s]
        suffix = prompt[s + len(suf.strip()) : m]
        if style == "codellama":  # `<PRE> {prefix} <SUF>{suffix} <MID>`: one space of padding around each
            prefix = prefix[1:] if prefix.startswith(" ") else prefix
            prefix = prefix[:-1] if prefix.endswith(" ") else prefix
            suffix = suffix[:-1] if suffix.endswith(" ") else suffix
        return FimParts(head + prefix, suffix, style)
    return None


def model_fim_style(vocab: Iterable[str]) -> str | None:
    """Which sentinel style the model's tokenizer has as tokens (None: the model has no FIM tokens)."""
    return fim_style(vocab)


def render_fim(prefix: str, suffix: str, style: str) -> str:
    """The PSM prompt for `style` (the shared prompt format's FIM route)."""
    return completion_prompt(prefix, suffix, fim=style)


def fit_fim(prefix: str, suffix: str, budget: int, count_tokens) -> tuple[str, str]:
    """Trim prefix (from the left) and suffix (from the right) to `budget` tokens together.

    The text nearest the cursor matters most: the suffix gets at most a quarter of
    the budget, the prefix the rest. Trimming is at word boundaries.
    """
    if budget <= 0:
        return "", ""
    if count_tokens(prefix) + count_tokens(suffix) <= budget:
        return prefix, suffix
    suffix_budget = min(count_tokens(suffix), budget // 4)
    suffix = _trim(suffix, suffix_budget, count_tokens, keep_end=False)
    prefix = _trim(prefix, budget - count_tokens(suffix), count_tokens, keep_end=True)
    return prefix, suffix


def _trim(text: str, budget: int, count_tokens, keep_end: bool) -> str:
    """Longest word-aligned piece of `text` (its end or its start) within `budget` tokens."""
    if budget <= 0:
        return ""
    if count_tokens(text) <= budget:
        return text
    lo, hi = 0, len(text)  # binary search on characters kept
    while lo < hi:
        mid = (lo + hi + 1) // 2
        piece = text[len(text) - mid :] if keep_end else text[:mid]
        if count_tokens(piece) <= budget:
            lo = mid
        else:
            hi = mid - 1
    piece = text[len(text) - lo :] if keep_end else text[:lo]
    cut = piece.find(" ") if keep_end else piece.rfind(" ")
    if 0 < cut < len(piece) - 1 and lo < len(text):
        piece = piece[cut + 1 :] if keep_end else piece[:cut]
    return piece
