"""Training pairs in ChatML built from one file's chunks.

Row format (docs/architecture.md): `{"messages": [...], "kind", "source", "chunk"}`;
the last message is the assistant target, always the author's own text.

Kinds:
- `continuation`: the previous passage -> the next one.
- `fim`: prefix and suffix around a gap -> the missing sentences, written with the
  model's own FIM tokens (`<|fim_prefix|>...<|fim_suffix|>...<|fim_middle|>`);
  trainers may render these rows raw (prompt + target) instead of through the chat
  template, as the server does for FIM completions.
- `neutral`, `info_dropout`, `abstract`: the many-to-one persona pairs, a degraded
  version of the passage -> the original.
- `lore`: a continuation whose system prompt carries the lore that applies, in the block
  `lore_context(chunk_text)` returns (the CLI passes rag's `system_block`, what the server injects).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from penwright.trainer.curate.chunk import Chunk, split_sentences
from penwright.trainer.curate.degrade import Degrader
from penwright.trainer.settings import CurationSettings

PROMPTS = {
    "continuation": "Continue the story from here.\n\n{text}",
    "neutral": "Rewrite this passage in my voice.\n\n{text}",
    "info_dropout": "Rewrite this passage in my voice, adding the descriptive words it lacks.\n\n{text}",
    "abstract": "Write this passage in my voice. Each placeholder in [brackets] stands for a person, place or "
    "thing: choose the words for them.\n\n{text}",
    "fim_text": "Write the missing passage marked [...] in my voice.\n\n{prefix}[...]{suffix}",
    "lore": "{system}\n\n{lore}",  # as the server injects lore into the system message
}
FIM_TOKEN_SETS = [
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<PRE>", "<SUF>", "<MID>"),
]
LORE_FRACTION = 0.25  # share of chunks that get a lore-conditioned pair when lore is available


def fim_tokens(tokenizer: Any) -> tuple[str, str, str] | None:
    """The tokenizer's FIM sentinels (prefix, suffix, middle), or None when it has none."""
    vocab = set(tokenizer.get_vocab()) if tokenizer is not None else set()
    return next((t for t in FIM_TOKEN_SETS if all(x in vocab for x in t)), None)


def _fraction(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _row(system: str, user: str, target: str, kind: str, chunk: Chunk) -> dict:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}, {"role": "assistant", "content": target}]
    return {"messages": messages, "kind": kind, "source": chunk.source, "chunk": chunk.id}


def _tail(text: str, max_chars: int) -> str:
    """The end of a passage, cut at a paragraph (or sentence) start, at most `max_chars` long."""
    if len(text) <= max_chars:
        return text
    cut = text[-max_chars:]
    para = cut.find("\n\n")
    if 0 <= para < len(cut) // 2:
        return cut[para + 2 :]
    sentences = split_sentences(cut)
    return " ".join(sentences[1:]) if len(sentences) > 1 else cut


def continuation_prompt(chunks: list[Chunk], i: int, context_chars: int) -> tuple[str, str] | None:
    """(context, target) for chunk i: the previous chunk's end -> this chunk; the first chunk splits itself."""
    chunk = chunks[i]
    if i > 0:
        return _tail(chunks[i - 1].text, context_chars), chunk.text
    paras = chunk.text.split("\n\n")
    if len(paras) < 2:
        sentences = split_sentences(chunk.text)
        if len(sentences) < 4:
            return None
        k = len(sentences) // 3
        return " ".join(sentences[:k]), " ".join(sentences[k:])
    k = max(1, len(paras) // 3)
    return "\n\n".join(paras[:k]), "\n\n".join(paras[k:])


def fim_pair(chunk: Chunk, tokens: tuple[str, str, str] | None) -> tuple[str, str] | None:
    """(prompt, middle): one to three sentences taken out of the chunk's middle, chosen by its hash."""
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
    if tokens is None:
        return PROMPTS["fim_text"].format(prefix=prefix, suffix=suffix), middle
    pre, suf, mid = tokens
    return f"{pre}{prefix}{suf}{suffix}{mid}", middle


def build_pairs(
    chunks: list[Chunk],
    settings: CurationSettings,
    degrader: Degrader,
    fim: tuple[str, str, str] | None,
    context_chars: int,
    lore_context: Callable[[str], str] | None = None,
    degraded: dict | None = None,
) -> list[dict]:
    """All pairs of one file's chunks. `degraded` caches degrader outputs by (kind, chunk id)."""
    kinds = set(settings.pair_types)
    system = settings.system_prompt
    degraded = {} if degraded is None else degraded
    rows: list[dict] = []
    for i, chunk in enumerate(chunks):
        cont = continuation_prompt(chunks, i, context_chars)
        if "continuation" in kinds and cont:
            rows.append(_row(system, PROMPTS["continuation"].format(text=cont[0]), cont[1], "continuation", chunk))
        if "fim" in kinds and (f := fim_pair(chunk, fim)):
            rows.append(_row(system, f[0], f[1], "fim", chunk))
        for kind in ("neutral", "info_dropout", "abstract"):
            if kind not in kinds:
                continue
            key = f"{kind}:{chunk.id}"
            if key not in degraded:
                degraded[key] = degrader.degrade(kind, chunk.text)
            if degraded[key]:
                rows.append(_row(system, PROMPTS[kind].format(text=degraded[key]), chunk.text, kind, chunk))
        if "lore" in kinds and lore_context and cont and _fraction("lore:" + chunk.id) < LORE_FRACTION:
            lore = (lore_context(chunk.text) or "").strip()
            if lore:
                lore_system = PROMPTS["lore"].format(system=system, lore=lore)
                rows.append(_row(lore_system, PROMPTS["continuation"].format(text=cont[0]), cont[1], "lore", chunk))
    return rows
