"""The fixed prompt set: drawn deterministically from held-out passages, plus persona prompts.

- **continuation (chat)**: held-out dataset rows of kind "continuation", as the model was trained on
  them; the author's real target is the reference.
- **continuation (text)**: a held-out passage cut in the middle of a long paragraph at a sentence end;
  the model continues the plain text and the rest of the paragraph is the reference.
- **persona**: a bare noun ("The Stock Market") with the persona system prompt; it should come back as
  the author's kind of prose about it, not an encyclopedia entry.
"""

from __future__ import annotations

from penwright.trainer.evaluate.model import Prompt
from penwright.trainer.evaluate.style import paragraphs, sentences, words
from penwright.trainer.settings import DEFAULT_PERSONA_SYSTEM

MIN_PARAGRAPH_WORDS = 40
MAX_CONTEXT_WORDS = 220


def _spread(items: list, n: int) -> list:
    """`n` items evenly spaced through `items` (deterministic, covers the whole book)."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def text_continuations(texts: list[str], n: int) -> list[Prompt]:
    """Up to `n` plain-text continuation prompts cut from `texts` (held-out passages)."""
    candidates = []
    for ti, text in enumerate(texts):
        paras = paragraphs(text)
        for pi, para in enumerate(paras):
            sents = sentences(para)
            if len(words(para)) >= MIN_PARAGRAPH_WORDS and len(sents) >= 2:
                candidates.append((ti, pi, paras, sents))
    prompts = []
    for ti, pi, paras, sents in _spread(candidates, n):
        k = max(1, len(sents) // 2)
        before = paras[pi - 1] if pi > 0 else ""
        context = before if len(words(before)) <= MAX_CONTEXT_WORDS else ""  # the paragraph before, if short
        head = " ".join(sents[:k])
        prompts.append(
            Prompt(
                id=f"text-{ti}-{pi}",
                kind="continuation",
                text=(context + "\n\n" + head) if context else head,
                reference=" ".join(sents[k:]),
            )
        )
    return prompts


def row_continuations(rows: list[dict], n: int) -> list[Prompt]:
    """Up to `n` prompts from held-out continuation rows, in the route each was built for: inline rows as their
    raw prompt (what the editor sends), chat rows as their messages."""
    picked = _spread(
        [
            r
            for r in rows
            if r.get("kind") in ("continuation", "chat")
            and (isinstance(r.get("prompt"), str) or len(r.get("messages", [])) >= 2)
        ],
        n,
    )
    return [
        Prompt(
            id=f"row-{r.get('chunk') or i}", kind="continuation", text=r["prompt"], reference=r["completion"].strip()
        )
        if "prompt" in r
        else Prompt(
            id=f"row-{r.get('chunk') or i}",
            kind="chat",
            messages=r["messages"][:-1],
            reference=r["messages"][-1]["content"],
        )
        for i, r in enumerate(picked)
    ]


def persona_prompts(nouns: list[str], n: int, system: str = DEFAULT_PERSONA_SYSTEM) -> list[Prompt]:
    return [
        Prompt(
            id=f"persona-{i}",
            kind="persona",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": noun}],
        )
        for i, noun in enumerate(nouns[:n])
    ]


def build_prompts(
    valid_rows: list[dict] | None,
    reference_texts: list[str],
    n: int,
    persona_share: float = 0.25,
    nouns: list[str] | None = None,
) -> list[Prompt]:
    """`n` prompts: persona nouns, then held-out continuation rows, then plain-text cuts to fill up."""
    from penwright.trainer.evaluate.settings import DEFAULT_PERSONA_PROMPTS

    nouns = list(nouns if nouns is not None else DEFAULT_PERSONA_PROMPTS)
    n_persona = min(len(nouns), round(n * persona_share))
    rest = n - n_persona
    rows = row_continuations(valid_rows or [], (rest + 1) // 2)
    texts = text_continuations(reference_texts, rest - len(rows))
    return rows + texts + persona_prompts(nouns, n_persona)
