"""Training rows built from one file's chunks, in the shared prompt format (`penwright.trainer.prompt_format`).

Every row is rendered by the same function the server renders that route with, so an adapter learns
from the tokens it is served. Inline rows are `{"prompt", "completion", "kind", "source", "chunk"}`
(`"eos": true` when the completion ends with the end-of-text token); chat rows are `{"messages": [...]}`.
The completion (last message) is always the author's own text.

Kinds:
- `continuation` (inline): the text before a passage, raw -> the passage (ghost text, `/v1/completions`). The
  prompt of a file's first passage is that passage's own start, learned too (`"learn_prompt": true`); every other
  prompt is the end of the passage before, which its own row already teaches: learned twice, those words made the
  adapter worse on the author's unseen text (README: The voice), so there it is context only.
- `fim` (inline): prefix and suffix around a gap in the model's own FIM sentinels -> the missing sentences.
- `lore` (inline): a continuation whose prompt starts with the lore preamble the server injects.
- `chat`: a continuation in the chat frame (system prompt, "Continue the story from here.") for chat clients.
- `neutral`, `info_dropout`, `abstract` (chat): the many-to-one persona pairs, a degraded version of the
  passage -> the original. Opt-in: on a small base model they teach copy-editing, not continuing.
- `auto` (the default): the inline routes, plus a share of chat rows when the base is an instruct/chat
  model (`default_pair_types`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from penwright.trainer import prompt_format as pf
from penwright.trainer.curate.chunk import Chunk, split_sentences
from penwright.trainer.curate.degrade import Degrader
from penwright.trainer.settings import CurationSettings

PROMPTS = {
    "continuation": "Continue the story from here.\n\n{text}",
    "neutral": "Rewrite this passage in my voice.\n\n{text}",
    "info_dropout": "Rewrite this passage in my voice, adding the descriptive words it lacks.\n\n{text}",
    "abstract": "Write this passage in my voice. Each placeholder in [brackets] stands for a person, place or "
    "thing: choose the words for them.\n\n{text}",
}
INLINE_KINDS = ("continuation", "fim", "lore")
PERSONA_KINDS = ("neutral", "info_dropout", "abstract")
LORE_FRACTION = 0.25  # share of chunks that get a lore-conditioned pair when lore is available
CHAT_FRACTION = 0.25  # share of chunks that get a chat-frame pair under `auto` on an instruct model
FIM_FRACTION = 0.5  # share of chunks that get a FIM pair under `auto`: a FIM row is mostly context (README: The voice)
INSTRUCT_NAME = re.compile(r"(instruct|chat|[-_]it\b|[-_]it[-_])", re.IGNORECASE)


def fim_tokens(tokenizer: Any) -> str | None:
    """The tokenizer's FIM sentinel style (a key of prompt_format.FIM_STYLES), or None when it has none."""
    return pf.fim_style(tokenizer.get_vocab()) if tokenizer is not None else None


def is_instruct(tokenizer: Any) -> bool:
    """An instruct/chat model: a chat template and a name that says so (base models often ship a template too)."""
    name = str(getattr(tokenizer, "name_or_path", "") or "")
    return bool(getattr(tokenizer, "chat_template", None)) and bool(INSTRUCT_NAME.search(name.rsplit("/", 1)[-1]))


def default_pair_types(tokenizer: Any) -> list[str]:
    """`auto`: the inline routes the editor uses; plus chat-frame rows when the base is an instruct model."""
    kinds = ["continuation", "fim"]
    return kinds + ["chat"] if is_instruct(tokenizer) else kinds


def resolve_pair_types(settings: CurationSettings, tokenizer: Any) -> tuple[list[str], list[str]]:
    """(pair kinds to build, notes on what fell back): `auto` expanded, kinds the model cannot take dropped."""
    kinds: list[str] = []
    for kind in settings.pair_types:
        for k in default_pair_types(tokenizer) if kind == "auto" else [kind]:
            if k not in kinds:
                kinds.append(k)
    notes = []
    if "fim" in kinds and fim_tokens(tokenizer) is None:
        kinds.remove("fim")
        notes.append(
            "the base model has no fill-in-the-middle tokens: no FIM rows; requests with a suffix are "
            "served as continuations of the prefix"
        )
    chat_kinds = [k for k in kinds if k == "chat" or k in PERSONA_KINDS]
    if chat_kinds and not pf.has_chat_format(tokenizer):
        kinds = [k for k in kinds if k not in chat_kinds]
        notes.append(
            f"the base model has no chat template and no ChatML tokens: no {', '.join(chat_kinds)} rows; "
            "training uses the inline rows only"
        )
    return kinds, notes


def _fraction(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _row(system: str, user: str, target: str, kind: str, chunk: Chunk) -> dict:
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": target},
    ]
    return {"messages": messages, "kind": kind, "source": chunk.source, "chunk": chunk.id}


def _inline(prompt: str, completion: str, kind: str, chunk: Chunk, eos: bool = False) -> dict:
    row = {"prompt": prompt, "completion": completion, "kind": kind, "source": chunk.source, "chunk": chunk.id}
    return {**row, "eos": True} if eos else row


def _tail(text: str, max_chars: int) -> str:
    """The end of a passage, cut at a paragraph (or sentence) start, at most `max_chars` long."""
    if len(text) <= max_chars:
        return text
    cut = text[-max_chars:]
    para = cut.find("\n\n")
    if 0 <= para < len(cut) // 2:
        return cut[para + 2 :]
    sentences = split_sentences(cut)
    start = cut.find(sentences[1]) if len(sentences) > 1 else -1
    return cut[start:] if start > 0 else cut  # sliced, never re-joined: the text keeps its own breaks


def continuation_prompt(chunks: list[Chunk], i: int, context_chars: int) -> tuple[str, str] | None:
    """(context, target) for chunk i: the previous chunk's end -> this chunk; the first chunk splits itself."""
    chunk = chunks[i]
    if i > 0:  # the passage starts a paragraph: the break belongs to what the model writes
        return _tail(chunks[i - 1].text, context_chars), "\n\n" + chunk.text
    paras = chunk.text.split("\n\n")
    if len(paras) < 2:
        sentences = split_sentences(chunk.text)
        if len(sentences) < 4:
            return None
        k = len(sentences) // 3
        return " ".join(sentences[:k]), " " + " ".join(sentences[k:])
    k = max(1, len(paras) // 3)
    return "\n\n".join(paras[:k]), "\n\n" + "\n\n".join(paras[k:])


def _head(text: str, max_chars: int) -> str:
    """The start of a text, cut at a sentence end, at most `max_chars` long (at least one sentence)."""
    if len(text) <= max_chars:
        return text
    cut = max(text.rfind(". ", 0, max_chars), text.rfind("\n\n", 0, max_chars))
    return text[: cut + 1] if cut > 0 else text[:max_chars]


def fim_pair(chunk: Chunk, style: str | None, context_chars: int = 1 << 30) -> tuple[str, str] | None:
    """(prompt, middle): one to three sentences taken out of the chunk's middle, chosen by its hash, with at most
    `context_chars` of text before the gap and half that after it (what an editor sends around the cursor)."""
    pieces: list[tuple[str, str]] = []  # (sentence, separator after it)
    for para in chunk.text.split("\n\n"):
        sentences = split_sentences(para)
        pieces += [(s, " ") for s in sentences[:-1]] + [(sentences[-1], "\n\n")] if sentences else []
    if len(pieces) < 4:
        return None
    h = int(chunk.id[:8], 16)
    width = 1 + h % 3
    start = min(1 + (h // 3) % max(1, len(pieces) - width - 1), len(pieces) - width - 1)

    def join(part: list[tuple[str, str]]) -> str:
        return "".join(s + sep for s, sep in part)

    prefix = join(pieces[:start])
    middle = join(pieces[start : start + width]).rstrip()
    suffix = pieces[start + width - 1][1] + join(pieces[start + width :]).rstrip()
    if style is None:
        return None
    gap = prefix[len(prefix.rstrip()) :]  # the separator before the gap stays in the prompt, as the editor has it
    prefix, suffix = _tail(prefix.rstrip(), context_chars) + gap, _head(suffix, context_chars // 2)
    return pf.completion_prompt(prefix, suffix, fim=style), middle


def build_pairs(
    chunks: list[Chunk],
    settings: CurationSettings,
    degrader: Degrader,
    fim: str | None,
    context_chars: int,
    lore_context: Callable[[str], str] | None = None,
    degraded: dict | None = None,
    kinds: list[str] | None = None,
) -> list[dict]:
    """All rows of one file's chunks. `kinds`: resolved pair types (`resolve_pair_types`; default the settings').
    `lore_context(text)` returns the lore text that applies; `degraded` caches degrader outputs by (kind, chunk id)."""
    kinds = list(settings.pair_types if kinds is None else kinds)
    degraded = {} if degraded is None else degraded
    rows: list[dict] = []
    for i, chunk in enumerate(chunks):
        cont = continuation_prompt(chunks, i, context_chars)
        if "continuation" in kinds and cont:  # `words`: the passage's own size (its start may be the prompt)
            row = {**_inline(cont[0], cont[1], "continuation", chunk), "words": chunk.words}
            rows.append({**row, "learn_prompt": True} if i == 0 else row)
        auto_share = "auto" in settings.pair_types
        if (
            "fim" in kinds
            and (not auto_share or _fraction("fim:" + chunk.id) < FIM_FRACTION)
            and (f := fim_pair(chunk, fim, context_chars))
        ):
            rows.append(_inline(f[0], f[1], "fim", chunk, eos=True))
        if "chat" in kinds and cont and (not auto_share or _fraction("chat:" + chunk.id) < CHAT_FRACTION):
            rows.append(
                _row(
                    settings.system_prompt,
                    PROMPTS["continuation"].format(text=cont[0]),
                    cont[1].lstrip(),
                    "chat",
                    chunk,
                )
            )
        rows += _persona_rows(chunk, kinds, settings.system_prompt, degrader, degraded)
        if "lore" in kinds and lore_context and cont and _fraction("lore:" + chunk.id) < LORE_FRACTION:
            lore = (lore_context(chunk.text) or "").strip()
            if lore:
                rows.append(_inline(pf.completion_prompt(cont[0], lore=lore), cont[1], "lore", chunk))
    return rows


def _persona_rows(chunk: Chunk, kinds: list[str], system: str, degrader: Degrader, degraded: dict) -> list[dict]:
    rows = []
    for kind in PERSONA_KINDS:
        if kind not in kinds:
            continue
        key = f"{kind}:{chunk.id}"
        if key not in degraded:
            degraded[key] = degrader.degrade(kind, chunk.text)
        if degraded[key]:
            rows.append(_row(system, PROMPTS[kind].format(text=degraded[key]), chunk.text, kind, chunk))
    return rows
