"""Burrows' Delta over function-word frequencies: "whose prose does this read like?"

Function words (the, of, and, but, very, upon, ...) are used unconsciously and at stable rates: the standard
authorship signal (Burrows 2002). Each text becomes the relative frequencies of `FUNCTION_WORDS`, z-scored
with the mean and spread of many segments of a reference corpus; Delta between two texts is the mean absolute
difference of their z-scores. Lower is closer; two texts by one author typically sit well below two authors.

The package ships `references.json` (built by `benchmarks/build_references.py` from public-domain novels):
per-author mean frequencies and the corpus mean and spread, no text. A handful of numbers per author, so the
daemon can say how far a generation is from its author and from the nearest other writer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FUNCTION_WORDS = (
    "the and to of a i in was he it that her his you she had with as for not but at be is him on my so all "
    "have me said by this which there they from were been one would what could no we an or very when if "
    "then them their more into out up do did some any will must upon should such only now much than its "
    "before our who after can your over again here how even well yet down never shall these those though "
    "while being too am are has may might every most other both same own just still always ever quite rather"
).split()
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
MIN_WORDS = 300  # below this, frequencies are too noisy to say anything
MIN_FUNCTION_SHARE = 0.2  # English prose: ~40-50% of words are in the list; far less means another language
REFERENCES = Path(__file__).with_name("references.json")


class NotMeasurable(ValueError):
    """The text is too short, or not in a language the function-word list covers; the message says which."""


@dataclass(frozen=True)
class Profile:
    freqs: tuple[float, ...]
    words: int


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("\u2019", "'"))


def profile(text: str) -> Profile:
    """Relative frequencies of the function words in `text`; NotMeasurable when it cannot be judged."""
    tokens = words_of(text)
    if len(tokens) < MIN_WORDS:
        raise NotMeasurable(f"only {len(tokens)} words (Delta needs {MIN_WORDS}+): style distance not measured")
    counts = dict.fromkeys(FUNCTION_WORDS, 0)
    for t in tokens:
        if t in counts:
            counts[t] += 1
    share = sum(counts.values()) / len(tokens)
    if share < MIN_FUNCTION_SHARE:
        raise NotMeasurable(
            f"only {share:.0%} of the words are English function words: the text does not look like "
            "English, which the function-word list covers; style distance not measured"
        )
    return Profile(tuple(counts[w] / len(tokens) for w in FUNCTION_WORDS), len(tokens))


@dataclass(frozen=True)
class References:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    authors: dict[str, tuple[float, ...]]

    def delta(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        """Burrows' Delta: mean |z(a) - z(b)| over the function words."""
        return sum(abs(x - y) / s for x, y, s in zip(a, b, self.std)) / len(self.std)


@lru_cache(maxsize=1)
def load_references(path: Path = REFERENCES) -> References:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data["words"] != FUNCTION_WORDS:
        raise ValueError(f"{path}: built for another function-word list; rebuild it (benchmarks/build_references.py)")
    return References(
        tuple(data["mean"]), tuple(max(s, 1e-6) for s in data["std"]), {k: tuple(v) for k, v in data["authors"].items()}
    )


def attribution(
    generated: str, author_text: str, refs: References | None = None, exclude: tuple[str, ...] = ()
) -> dict:
    """How close `generated` is to the author (their held-out text) and to each reference author.

    Returns {delta_author, delta_nearest_other, nearest_other, margin (= nearest other - author: larger is more
    clearly the author), words} or {"note": why not measured}.
    """
    refs = refs or load_references()
    try:
        gen, own = profile(generated), profile(author_text)
    except NotMeasurable as err:
        return {"note": str(err)}
    others = {name: refs.delta(gen.freqs, f) for name, f in refs.authors.items() if name not in exclude}
    d_author = refs.delta(gen.freqs, own.freqs)
    nearest = min(others, key=others.get) if others else None
    out = {"delta_author": round(d_author, 4), "words": gen.words}
    if nearest is not None:
        out.update(
            nearest_other=nearest,
            delta_nearest_other=round(others[nearest], 4),
            margin=round(others[nearest] - d_author, 4),
        )
    return out


def segments(text: str, size: int = 2000) -> list[str]:
    """Consecutive pieces of about `size` words (for the corpus mean and spread)."""
    tokens = text.split()
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens) - size + 1, size)]


def build_references(books: dict[str, list[str]]) -> dict:
    """references.json's content from {author: [book texts]}: per-author mean frequencies, segment mean and spread."""
    seg_profiles, authors = [], {}
    for author, texts in books.items():
        profs = [profile(s) for t in texts for s in segments(t)]
        seg_profiles += profs
        authors[author] = [round(sum(p.freqs[i] for p in profs) / len(profs), 7) for i in range(len(FUNCTION_WORDS))]
    n = len(seg_profiles)
    mean = [sum(p.freqs[i] for p in seg_profiles) / n for i in range(len(FUNCTION_WORDS))]
    std = [
        math.sqrt(sum((p.freqs[i] - mean[i]) ** 2 for p in seg_profiles) / max(n - 1, 1))
        for i in range(len(FUNCTION_WORDS))
    ]
    return {
        "words": FUNCTION_WORDS,
        "segments": n,
        "mean": [round(x, 7) for x in mean],
        "std": [round(x, 7) for x in std],
        "authors": authors,
    }
