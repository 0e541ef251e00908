"""Guards against the ways a tuned model fails a writer, whatever its style score.

- **Copying**: the model recites the manuscript instead of writing. Measured as the longest run of
  words a generation shares verbatim with the training set, and the share of generations that copy
  more than `copy_words` words in a row.
- **Degeneration**: a "fried" adapter loops ("and the door, and the door, and the door").
  Measured as the repetition rate (share of word 3-grams that already occurred earlier in the same
  generation) and distinct-n (unique n-grams / all n-grams; low means repetitive).
- **Leaks**: chat scaffolding or assistant talk in the prose (`<|im_start|>`, `Human:`, "I am an AI").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_BANNED = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "Human:",
    "Assistant:",
    "User:",
    "I am an AI",
    "I'm an AI",
    "as an AI",
    "language model",
)
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)*")


def normal_words(text: str) -> list[str]:
    """Lower-case words, punctuation and line breaks dropped: what "verbatim" compares."""
    return [w.lower() for w in _WORD.findall(text)]


class CopyIndex:
    """The training texts, normalised to one space-separated string of words, for verbatim look-ups."""

    def __init__(self, texts: list[str]):
        # Texts are separated by a marker no word can match, so a span cannot bridge two texts.
        self._corpus = " " + " | ".join(" ".join(normal_words(t)) for t in texts) + " "

    def __len__(self) -> int:
        return len(self._corpus)

    def contains(self, span: list[str]) -> bool:
        return (" " + " ".join(span) + " ") in self._corpus

    def longest_span(self, text: str) -> tuple[int, str]:
        """(length in words, the span) of the longest run of words of `text` found verbatim in the index.

        Grows a window: each step either extends the best length by one or slides on, so it costs
        about 2 x len(words) substring searches.
        """
        ws = normal_words(text)
        best, where = 0, 0
        for i in range(len(ws)):
            while i + best < len(ws) and self.contains(ws[i : i + best + 1]):
                best, where = best + 1, i
        return best, " ".join(ws[where : where + best])


def copy_metrics(generations: list[str], index: CopyIndex, copy_words: int = 12) -> dict:
    """Longest verbatim span per generation and the share over `copy_words` words."""
    spans = [index.longest_span(g) for g in generations]
    lengths = [n for n, _ in spans]
    worst = max(range(len(spans)), key=lambda i: lengths[i]) if spans else None
    return {
        "copy_longest": max(lengths, default=0),
        "copy_mean_longest": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "copy_share": round(sum(n > copy_words for n in lengths) / len(lengths), 4) if lengths else 0.0,
        "copy_words": copy_words,
        "copy_example": spans[worst][1] if worst is not None else "",
    }


def _ngrams(ws: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of the word n-grams of `text` that already occurred earlier in it (0 = no repeats)."""
    grams = _ngrams(normal_words(text), n)
    if not grams:
        return 0.0
    seen: set = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams, within each text, averaged over texts (1 = no repeats)."""
    values = []
    for t in texts:
        grams = _ngrams(normal_words(t), n)
        if grams:
            values.append(len(set(grams)) / len(grams))
    return sum(values) / len(values) if values else 1.0


def degeneration_metrics(generations: list[str]) -> dict:
    reps = [repetition_rate(g) for g in generations]
    return {
        "repetition": round(sum(reps) / len(reps), 4) if reps else 0.0,
        "repetition_max": round(max(reps), 4) if reps else 0.0,
        "distinct_1": round(distinct_n(generations, 1), 4),
        "distinct_2": round(distinct_n(generations, 2), 4),
        "empty_share": round(sum(not g.strip() for g in generations) / len(generations), 4) if generations else 0.0,
    }


def find_leaks(text: str, banned: tuple[str, ...] | list[str] = DEFAULT_BANNED) -> list[str]:
    """The banned strings found in `text` (case-insensitive)."""
    low = text.lower()
    return [b for b in banned if b.lower() in low]


def leak_metrics(generations: list[str], banned: tuple[str, ...] | list[str] = DEFAULT_BANNED) -> dict:
    found = [find_leaks(g, banned) for g in generations]
    leaked = sorted({b for f in found for b in f})
    return {
        "leak_share": round(sum(bool(f) for f in found) / len(found), 4) if found else 0.0,
        "leaked": leaked,
    }


@dataclass(frozen=True)
class GuardLimits:
    """Where a guard trips. The defaults live in EvalSettings: `GuardLimits.default()`."""

    copy_words: int
    max_copy_share: float
    max_repetition: float
    min_distinct_2: float
    max_leak_share: float = 0.0  # no leaked chat tag is ever acceptable

    @staticmethod
    def default() -> GuardLimits:
        from penwright.trainer.evaluate.settings import EvalSettings

        return EvalSettings().limits()


def guard_failures(metrics: dict, limits: GuardLimits) -> list[str]:
    """Plain-language reasons the metrics fail a guard (empty list = all guards pass)."""
    problems = []
    if metrics.get("copy_share", 0.0) > limits.max_copy_share:
        problems.append(
            f"copies the training text: {metrics['copy_share']:.0%} of samples repeat more than "
            f"{limits.copy_words} words verbatim (limit {limits.max_copy_share:.0%})"
        )
    if metrics.get("repetition", 0.0) > limits.max_repetition:
        problems.append(f"loops: repetition rate {metrics['repetition']:.2f} (limit {limits.max_repetition:.2f})")
    if metrics.get("distinct_2", 1.0) < limits.min_distinct_2:
        problems.append(f"repetitive: distinct-2 {metrics['distinct_2']:.2f} (minimum {limits.min_distinct_2:.2f})")
    if metrics.get("leak_share", 0.0) > limits.max_leak_share:
        problems.append(f"leaks chat scaffolding into prose: {', '.join(metrics.get('leaked', []))}")
    return problems
