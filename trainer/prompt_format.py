"""The one prompt format: what the model is served on each route, and what training rows are built from.

The server renders every request with these functions and curation builds every training row with
the same functions, so the tokens an adapter learned from are the tokens it is served:

- inline continuation (ghost text, `/v1/completions` without a suffix): the raw prefix, nothing around it;
- fill-in-the-middle (`suffix`, or a client's FIM prompt): the model's own sentinels, prefix-suffix-middle;
- lore: a compact preamble in front of the story text (inside a leading FIM prefix sentinel);
- chat (`/v1/chat/completions`, persona pairs): the model's chat template (ChatML when it has none),
  with lore in the system message.

Rows for the first three are `{"prompt", "completion"}` (the completion ends with the end-of-text token
when `"eos": true`, as a FIM middle must); chat rows are `{"messages": [...]}`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# (prefix, suffix, middle) sentinel triples, in prefix-suffix-middle (PSM) order.
FIM_STYLES: dict[str, tuple[str, str, str]] = {
    "qwen": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    "deepseek": ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    "codellama": ("<PRE> ", " <SUF>", " <MID>"),
}
LORE_OPEN, LORE_CLOSE = "<lore>", "</lore>"
LORE_SYSTEM_HEADER = (
    "Story notes for the passage below: keep these facts consistent, and do not copy them into the text."
)


def fim_style(vocab: Iterable[str]) -> str | None:
    """Which sentinel style the model's tokenizer has as tokens (None: the model has no FIM tokens)."""
    tokens = set(vocab)
    for style, triple in FIM_STYLES.items():
        if all(t.strip() in tokens for t in triple):
            return style
    return None


def lore_block(lore: str) -> str:
    return f"{LORE_OPEN}\n{lore}\n{LORE_CLOSE}"


def lore_preamble(lore: str | None) -> str:
    """The preamble put in front of the story text of completion prompts ('' without lore)."""
    return f"{lore_block(lore)}\n\n" if lore else ""


def lore_system(lore: str | None) -> str:
    """The lore block as chat requests carry it in the system message ('' without lore)."""
    return f"{LORE_SYSTEM_HEADER}\n{lore_block(lore)}" if lore else ""


def completion_prompt(
    prefix: str, suffix: str | None = None, *, fim: str | None = None, lore: str | None = None
) -> str:
    """The prompt of an inline or fill-in-the-middle request.

    With a suffix and a model FIM style: `<pre>{lore preamble}{prefix}<suf>{suffix}<mid>`; otherwise the
    prefix itself (a model without FIM tokens continues the prefix), after the lore preamble.
    """
    story = lore_preamble(lore) + prefix
    if suffix is None or fim is None:
        return story
    pre, suf, mid = FIM_STYLES[fim]
    return f"{pre}{story}{suf}{suffix}{mid}"


def with_lore_system(messages: list[dict], lore: str | None) -> list[dict]:
    """A new message list with the lore block in the system message; the input is not modified."""
    block = lore_system(lore)
    out = [dict(m) for m in messages]
    if not block:
        return out
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content'].rstrip()}\n\n{block}" if out[0]["content"].strip() else block
    else:
        out.insert(0, {"role": "system", "content": block})
    return out


def chatml(messages: list[dict], add_generation_prompt: bool = False) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def has_chat_format(tokenizer: Any) -> bool:
    """A chat template, or the ChatML tokens the fallback renders."""
    if getattr(tokenizer, "chat_template", None):
        return True
    vocab = tokenizer.get_vocab()
    return "<|im_start|>" in vocab and "<|im_end|>" in vocab


def chat_prompt(tokenizer: Any, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Messages through the model's chat template (ChatML when it has none)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return chatml(messages, add_generation_prompt)
