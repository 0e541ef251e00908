"""Prose-aware stopping for inline completion: end at a sentence or paragraph boundary."""

from __future__ import annotations

import re

# End of a sentence: . ! ? or an ellipsis, then closing quotes/brackets, then whitespace (so we know it ended).
_SENTENCE = re.compile(r"(?:[.!?]|\u2026)[\"'\u201d\u2019)\]]*(?=\s)")
_PARAGRAPH = re.compile(r"\S\s*?\n[ \t]*\n")


def stop_check(mode: str | None, min_chars: int = 1):
    """A TextStream stop check: returns where to cut the generated text, or None to go on."""
    if mode == "sentence":

        def check(text: str) -> int | None:
            for m in _SENTENCE.finditer(text):
                if m.end() >= min_chars:
                    return m.end()
            return None

        return check
    if mode == "paragraph":

        def check(text: str) -> int | None:
            m = _PARAGRAPH.search(text)
            return m.start() + 1 if m else None

        return check
    return None
