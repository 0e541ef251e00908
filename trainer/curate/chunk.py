"""Token-budgeted, paragraph-aware chunking with the model's own tokenizer.

Paragraphs are packed greedily up to `target_tokens`; a chunk may run past the
target (never past `max_tokens`) rather than end at less than half of it. A
paragraph longer than `max_tokens` is split at sentence ends. Chunks never cross
a scene break; a scene's short tail is merged into its last chunk or, when that
would break the budget or the scene is shorter than `min_tokens`, dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from penwright.trainer.settings import CurationSettings

SEP = "\n\n"
_CLOSE = "[\"”’')\\]]"
_SENTENCE = re.compile(  # whitespace after . ! ? (and any closing quotes), before a capital: kept quotes stay put
    rf"(?:(?<=[.!?…])|(?<=[.!?…]{_CLOSE})|(?<=[.!?…]{_CLOSE}{_CLOSE}))(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bMs\.)\s+(?=[\"“‘'(\[]?[A-Z0-9])"
)


@dataclass
class Chunk:
    id: str  # sha256 of the text, 16 hex: the same passage has the same id everywhere
    text: str
    tokens: int
    source: str
    scene: int
    index: int  # position in its file
    words: int

    def as_dict(self) -> dict:
        return asdict(self)


def text_id(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Token counts without special tokens, batched (fast tokenizers do this in Rust)."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: no length warnings, faster
    out: list[int] = []
    for start in range(0, len(texts), 512):
        batch = list(texts[start : start + 512])
        if backend is not None:
            out.extend(len(e.ids) for e in backend.encode_batch(batch, add_special_tokens=False))
        else:
            out.extend(len(x) for x in tokenizer(batch, add_special_tokens=False)["input_ids"])
    return out


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(text)]
    return [p for p in parts if p]


def _split_long(para: str, n_tokens: int, limit: int, tokenizer: Any) -> list[tuple[str, int]]:
    """A paragraph over `limit` tokens -> pieces under it, cut at sentence ends (words as a last resort)."""
    if n_tokens <= limit:
        return [(para, n_tokens)]
    sentences = split_sentences(para)
    if len(sentences) <= 1:
        words = para.split()
        per = max(1, int(len(words) * limit / n_tokens * 0.9))
        sentences = [" ".join(words[i : i + per]) for i in range(0, len(words), per)]
    counts = count_tokens(tokenizer, sentences)
    pieces: list[tuple[str, int]] = []
    cur: list[str] = []
    cur_n = 0
    for s, n in zip(sentences, counts):
        if cur and cur_n + n + 1 > limit:
            pieces.append((" ".join(cur), cur_n))
            cur, cur_n = [], 0
        if n > limit:  # one enormous sentence: cut by words
            pieces.extend(_split_long(s, n, limit, tokenizer) if len(s.split()) > 1 else [(s, n)])
            continue
        cur.append(s)
        cur_n += n + (1 if cur_n else 0)
    if cur:
        pieces.append((" ".join(cur), cur_n))
    return pieces


def chunk_scenes(scenes: list[list[str]], source: str, settings: CurationSettings, tokenizer: Any) -> list[Chunk]:
    """Chunks of one file's scenes, in reading order."""
    min_words = settings.min_paragraph_words
    kept = [[p for p in scene if len(p.split()) >= min_words] for scene in scenes]
    flat = [p for scene in kept for p in scene]
    counts = iter(count_tokens(tokenizer, flat))
    texts: list[tuple[int, list[str]]] = []
    for s_idx, scene in enumerate(kept):
        paras: list[tuple[str, int]] = []
        for p in scene:
            paras.extend(_split_long(p, next(counts), settings.max_tokens, tokenizer))
        texts.extend((s_idx, group) for group in _pack(paras, settings))
    joined = [SEP.join(group) for _, group in texts]
    exact = count_tokens(tokenizer, joined)
    chunks: list[Chunk] = []
    for (s_idx, group), text, n in zip(texts, joined, exact):
        while n > settings.max_tokens and len(group) > 1:  # estimates ran over: shed the overlap at the head
            group = group[1:]
            text = SEP.join(group)
            n = count_tokens(tokenizer, [text])[0]
        if n < settings.min_tokens:
            continue
        chunks.append(Chunk(text_id(text), text, n, source, s_idx, len(chunks), len(text.split())))
    return chunks


def _pack(paras: list[tuple[str, int]], settings: CurationSettings) -> list[list[str]]:
    """Greedy packing of one scene's paragraphs (with their token counts) into chunks."""
    target, limit, overlap = settings.target_tokens, settings.max_tokens, settings.overlap_tokens
    sep = 2  # "\n\n" costs one or two tokens; err on the safe side
    groups: list[list[tuple[str, int]]] = []
    cur: list[tuple[str, int]] = []
    cur_n = 0
    fresh = 0  # paragraphs in `cur` that are not overlap from the previous chunk
    for text, n in paras:
        grown = cur_n + n + (sep if cur else 0)
        if cur and fresh and (grown > limit or (grown > target and cur_n >= target // 2)):
            groups.append(cur)
            cur = _overlap_tail(cur, overlap, limit - n - sep)
            cur_n = sum(c for _, c in cur) + sep * max(0, len(cur) - 1)
            fresh = 0
            grown = cur_n + n + (sep if cur else 0)
        cur.append((text, n))
        cur_n = grown
        fresh += 1
    if cur and fresh:
        tail_n = cur_n
        if groups and tail_n < settings.min_tokens and sum(c for _, c in groups[-1]) + tail_n + sep <= limit:
            groups[-1].extend(cur[len(cur) - fresh :])  # a short tail joins the chunk before it
        else:
            groups.append(cur)
    return [[t for t, _ in g] for g in groups]


def _overlap_tail(group: list[tuple[str, int]], overlap: int, room: int) -> list[tuple[str, int]]:
    """The end of `group` worth at most `overlap` tokens (fitting in `room`): whole paragraphs, then sentences."""
    budget = min(overlap, room)
    if budget <= 0:
        return []
    tail: list[tuple[str, int]] = []
    total = 0
    for text, n in reversed(group):
        if total + n <= budget:
            tail.insert(0, (text, n))
            total += n
            continue
        sentences = split_sentences(text)
        per_char = n / max(1, len(text))
        picked: list[str] = []
        for s in reversed(sentences[1:]):  # never the whole paragraph again
            cost = int(len(s) * per_char / 0.9) + 1  # estimated, with a margin; exact counts come later
            if total + cost > budget:
                break
            picked.insert(0, s)
            total += cost
        if picked:
            tail.insert(0, (" ".join(picked), int(len(" ".join(picked)) * per_char / 0.9) + 1))
        break
    return tail
