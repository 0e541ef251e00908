"""Style profile of a text, and how close one text's style is to another's (0-100).

A writer's voice shows in countable habits. `profile(text)` counts them; `style_score(text_profile,
author_profile)` compares them part by part and averages the parts into one score, where 100 means
"indistinguishable on every habit we measure" (a text compared with itself scores exactly 100).

The parts, each a similarity between 0 (nothing alike) and 1 (the same), and their weight:

- **vocabulary** (0.20): the author's *characteristic words* are the words they use far more often
  than general English does (general frequencies from the `wordfreq` package; names are left out).
  The part compares how much of each text is made of those words.
- **sentence rhythm** (0.20): words per sentence. Mean and spread (rhythm is variance: short
  sentences among long ones), plus how alike the two distributions are (1 - total variation
  distance between the histograms).
- **paragraph length** (0.05): mean words per paragraph (weighted low: short samples say little).
- **dialogue** (0.10): share of words inside quotation marks.
- **punctuation** (0.15): semicolons, colons, dashes, exclamations, questions, ellipses and commas
  per 100 words.
- **pacing** (0.10): action verbs ("seized", "rushed") and transitions ("however", "presently") per
  100 words.
- **function words** (0.20): how the author leans on "the, of, upon, very, her..." compared with
  general English; the classic authorship signal (as in Burrows' Delta). Cosine similarity of the
  two texts' deviations from general English frequencies.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

WEIGHTS = {
    "vocabulary": 0.20,
    "sentence_rhythm": 0.20,
    "paragraph_length": 0.05,
    "dialogue": 0.10,
    "punctuation": 0.15,
    "pacing": 0.10,
    "function_words": 0.20,
}
# Upper edges of the sentence-length histogram buckets (words); the last bucket is open-ended.
SENTENCE_BUCKETS = (5, 10, 15, 20, 25, 30, 40, 50, 70)
CHARACTERISTIC_WORDS = 200

FUNCTION_WORDS = tuple(
    """the a an and but or nor of to in on at by for with from into upon as that which who whom whose
    this these those it its he she they him her them his their i me my we us our you your not no all
    any some very so such than then there here when while though although if would could should must
    might may shall will have had has be been was were is are am do did more most only own what""".split()
)
_FUNCTION_SET = frozenset(FUNCTION_WORDS)
ACTION_VERBS = frozenset(
    """ran run runs running rushed rush rushing sprang spring leaped leapt leap jumped jump seized seize
    grabbed grab snatched snatch struck strike hit threw throw flung fling pulled pull pushed push
    dashed dash darted dart hurried hurry raced race fled flee caught catch fired fire shot shoot
    stepped strode burst kicked slammed swung crashed tore climbed fell whirled wrenched gripped
    clutched hurled""".split()
)
TRANSITIONS = frozenset(
    """however therefore moreover meanwhile suddenly afterwards presently nevertheless indeed
    accordingly besides instantly immediately thus hence finally soon still yet then""".split()
)
PUNCTUATION = {
    "semicolon": re.compile(r";"),
    "colon": re.compile(r":"),
    "dash": re.compile(r"--+|\u2014|\u2013|(?<=\s)-(?=\s)"),
    "exclamation": re.compile(r"!"),
    "question": re.compile(r"\?"),
    "ellipsis": re.compile(r"\.\.\.|\u2026"),
    "comma": re.compile(r","),
}

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_PARAGRAPH = re.compile(r"\n\s*\n")
_ABBREV = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Col|Capt|Lieut|Gen|Rev|Sr|Jr|Prof|No)\.", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+")
_QUOTE = re.compile(r"[\"\u201c\u201d]")


@dataclass
class StyleProfile:
    """Countable habits of one text. Rates are per 100 words; lengths are in words."""

    words: int
    counts: Counter = field(repr=False)
    capitalized: Counter = field(repr=False)
    sentence_lengths: list[int] = field(repr=False)
    paragraph_lengths: list[int] = field(repr=False)
    dialogue_ratio: float
    punctuation: dict[str, float]
    action_verbs: float
    transitions: float

    @property
    def sentence_mean(self) -> float:
        return _mean(self.sentence_lengths)

    @property
    def sentence_std(self) -> float:
        return _std(self.sentence_lengths)

    @property
    def paragraph_mean(self) -> float:
        return _mean(self.paragraph_lengths)

    def sentence_histogram(self) -> list[float]:
        return sentence_histogram(self.sentence_lengths)

    def summary(self) -> dict:
        """The figures a writer can read (for report.json)."""
        return {
            "words": self.words,
            "sentences": len(self.sentence_lengths),
            "sentence_mean": round(self.sentence_mean, 2),
            "sentence_std": round(self.sentence_std, 2),
            "sentence_histogram": [round(x, 4) for x in self.sentence_histogram()],
            "paragraph_mean": round(self.paragraph_mean, 2),
            "dialogue_ratio": round(self.dialogue_ratio, 4),
            "punctuation_per_100_words": {k: round(v, 3) for k, v in self.punctuation.items()},
            "action_verbs_per_100_words": round(self.action_verbs, 3),
            "transitions_per_100_words": round(self.transitions, 3),
        }


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _std(xs: list[int]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def paragraphs(text: str) -> list[str]:
    """Paragraphs split at blank lines, hard-wrapped lines joined (as in Gutenberg texts)."""
    return [" ".join(p.split()) for p in _PARAGRAPH.split(text.replace("\r\n", "\n")) if p.strip()]


def unwrap(text: str) -> str:
    """The text with hard-wrapped lines joined: one paragraph per line, blank lines between (as a manuscript)."""
    return "\n\n".join(paragraphs(text))


def sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph; "Mr." and friends do not end a sentence."""
    protected = _ABBREV.sub(lambda m: m.group(1) + "\x00", paragraph)
    return [s.replace("\x00", ".") for s in _SENTENCE_END.split(protected) if _WORD.search(s)]


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentence_histogram(lengths: list[int]) -> list[float]:
    """Share of sentences in each bucket of SENTENCE_BUCKETS (plus one open bucket at the end)."""
    counts = [0] * (len(SENTENCE_BUCKETS) + 1)
    for n in lengths:
        counts[next((i for i, edge in enumerate(SENTENCE_BUCKETS) if n <= edge), len(SENTENCE_BUCKETS))] += 1
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _dialogue_words(paragraph: str) -> int:
    """Words inside quotation marks; a quote left open at a paragraph's end closes there."""
    inside, n = False, 0
    for i, part in enumerate(_QUOTE.split(paragraph)):
        if i:
            inside = not inside
        if inside:
            n += len(_WORD.findall(part))
    return n


def profile(text: str) -> StyleProfile:
    """Count the habits of `text` (any length; Gutenberg hard wraps and curly quotes are fine)."""
    paras = paragraphs(text)
    tokens = [w for p in paras for w in _WORD.findall(p)]
    n = len(tokens)
    per100 = (100.0 / n) if n else 0.0
    lower = [w.lower() for w in tokens]
    counts = Counter(lower)
    capitalized = Counter(w.lower() for w in tokens if w[0].isupper())
    sentence_lengths = [len(_WORD.findall(s)) for p in paras for s in sentences(p)]
    joined = "\n".join(paras)
    return StyleProfile(
        words=n,
        counts=counts,
        capitalized=capitalized,
        sentence_lengths=sentence_lengths,
        paragraph_lengths=[len(_WORD.findall(p)) for p in paras],
        dialogue_ratio=(sum(_dialogue_words(p) for p in paras) / n) if n else 0.0,
        punctuation={k: len(rx.findall(joined)) * per100 for k, rx in PUNCTUATION.items()},
        action_verbs=sum(counts[w] for w in ACTION_VERBS) * per100,
        transitions=sum(counts[w] for w in TRANSITIONS) * per100,
    )


@lru_cache(maxsize=65536)
def english_frequency(word: str) -> float:
    """How often `word` appears in general English (wordfreq), floored so unknown words stay finite."""
    from wordfreq import word_frequency

    return max(word_frequency(word, "en"), 1e-8)


def characteristic_words(author: StyleProfile, k: int = CHARACTERISTIC_WORDS, min_count: int = 3) -> list[str]:
    """The author's `k` most characteristic words: used far more than in general English.

    Ranked by each word's contribution to the divergence from English, p * log(p / f), so a word must
    be both frequent in the author's text and unusual in English to rank. Words mostly written with a
    capital letter (names: "Elinor", "Baker Street") are left out: they belong to a book, not a voice;
    so are the function words, which have their own part.
    """
    if not author.words:
        return []
    scored = []
    for w, c in author.counts.items():
        if c < min_count or author.capitalized[w] > c / 2 or w in _FUNCTION_SET:
            continue
        p = c / author.words
        f = english_frequency(w)
        if p > f:
            scored.append((p * math.log(p / f), w))
    return [w for _, w in sorted(scored, reverse=True)[:k]]


def characteristic_share(text: StyleProfile, vocabulary: list[str]) -> float:
    """Share of the words of `text` that are in `vocabulary`."""
    if not text.words:
        return 0.0
    return sum(text.counts[w] for w in vocabulary) / text.words


def _ratio_similarity(a: float, b: float, floor: float = 0.0) -> float:
    """1 when equal, towards 0 as they differ: 1 - |a-b| / (a+b), with `floor` added to both
    so that tiny rates (0.0 vs 0.1 per 100 words) do not count as opposites."""
    a, b = a + floor, b + floor
    return 1.0 if a + b == 0 else 1.0 - abs(a - b) / (a + b)


def _function_word_deviation(p: StyleProfile) -> list[float]:
    n = max(p.words, 1)
    return [(p.counts[w] / n - english_frequency(w)) / math.sqrt(english_frequency(w)) for w in FUNCTION_WORDS]


def _cosine(a: list[float], b: list[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def part_similarities(
    text: StyleProfile, author: StyleProfile, vocabulary: list[str] | None = None
) -> dict[str, float]:
    """Similarity (0..1) of `text` to `author` for each part of the score (see the module doc)."""
    vocabulary = characteristic_words(author) if vocabulary is None else vocabulary
    tv = 0.5 * sum(abs(x - y) for x, y in zip(text.sentence_histogram(), author.sentence_histogram()))
    rhythm = (
        0.5 * (1 - tv)
        + 0.25 * _ratio_similarity(text.sentence_mean, author.sentence_mean)
        + 0.25 * _ratio_similarity(text.sentence_std, author.sentence_std)
    )
    punct = [_ratio_similarity(text.punctuation[k], author.punctuation[k], floor=0.1) for k in PUNCTUATION]
    pacing = [
        _ratio_similarity(text.action_verbs, author.action_verbs, floor=0.1),
        _ratio_similarity(text.transitions, author.transitions, floor=0.1),
    ]
    return {
        "vocabulary": _ratio_similarity(
            characteristic_share(text, vocabulary), characteristic_share(author, vocabulary)
        ),
        "sentence_rhythm": rhythm,
        "paragraph_length": _ratio_similarity(text.paragraph_mean, author.paragraph_mean),
        "dialogue": 1.0 - abs(text.dialogue_ratio - author.dialogue_ratio),
        "punctuation": sum(punct) / len(punct),
        "pacing": sum(pacing) / len(pacing),
        "function_words": 0.5 * (1 + _cosine(_function_word_deviation(text), _function_word_deviation(author))),
    }


def style_score(text: StyleProfile, author: StyleProfile, vocabulary: list[str] | None = None) -> dict:
    """Overall 0-100 score of `text` against `author`, with each part's similarity.

    Returns {"score": float, "parts": {part: 0..1}}. Pass `vocabulary` (from characteristic_words)
    when scoring many texts against one author, to compute it once.
    """
    parts = part_similarities(text, author, vocabulary)
    score = 100.0 * sum(WEIGHTS[k] * v for k, v in parts.items()) / sum(WEIGHTS.values())
    return {"score": round(score, 2), "parts": {k: round(v, 4) for k, v in parts.items()}}


def score_texts(texts: list[str], author_texts: list[str]) -> dict:
    """Score a set of texts (e.g. generations, joined as paragraphs) against the author's texts."""
    author = profile("\n\n".join(author_texts))
    return style_score(profile("\n\n".join(texts)), author)
