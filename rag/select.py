"""Ranking lore sections for a passage and cutting them to a token budget.

Inputs are already-found candidates (always entries, name/key hits, vector
hits); this module only orders them, applies the chapter filter and the budget,
and renders the chosen sections in the one text format the model sees
(`render`), so what is counted is what is injected.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from penwright.rag.entries import LoreEntry, Section
from penwright.rag.keys import KeyMatcher

TokenCounter = Callable[[str], int]
_TOKEN = re.compile(r"\w+|[^\w\s]")

# score bands: always entries > entries named in the passage > recalled by meaning
ALWAYS, NAMED, NAMED_OTHER = 1000.0, 100.0, 30.0


def approx_tokens(text: str) -> int:
    """Fallback counter when no tokenizer is passed: words and punctuation marks (close to BPE for English prose)."""
    return len(_TOKEN.findall(text))


@dataclass
class Candidate:
    section: Section
    score: float
    reason: str  # "always" | "name" | "vector"
    matched: str = ""  # the alias or key that fired, for "name"


@dataclass
class SelectedEntry:
    id: str  # section id: "<file>::<slug>"
    name: str
    type: str
    file: str
    heading: str
    reason: str
    score: float
    tokens: int  # tokens of this section as rendered

    def report(self) -> dict:
        return {"id": self.id, "name": self.name, "tokens": self.tokens, "reason": self.reason}


@dataclass
class Selection:
    entries: list[SelectedEntry] = field(default_factory=list)
    text: str = ""  # the rendered lore block (see `render`), what gets injected
    tokens: int = 0  # tokens of `text` by the counter used

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(e.name for e in self.entries))

    def report(self) -> list[dict]:
        return [e.report() for e in self.entries]


def always_candidates(entries: Iterable[LoreEntry]) -> list[Candidate]:
    return [
        Candidate(s, ALWAYS + e.priority - i * 0.01, "always")
        for e in entries
        if e.always
        for i, s in enumerate(e.sections)
    ]


def named_candidates(
    matcher: KeyMatcher, sections_of: Callable[[str], list[Section]], prefix: str, suffix: str, scan_chars: int
) -> list[Candidate]:
    """Entries named (by name, alias or key) near the cursor: the lead section high, the others lower."""
    before, after = prefix[-scan_chars:], suffix[: scan_chars // 3]
    out = []
    for hit in matcher.find(f"{before}\n{after}").values():
        if hit.end <= len(before):
            recency = hit.end / max(1, len(before))
        else:  # after the cursor: nearer is more relevant, but less than what was just written
            recency = 0.5 * (1 - (hit.end - len(before)) / max(1, len(after) + 1))
        for i, s in enumerate(sections_of(hit.entry_id)):
            base = NAMED + 10 * recency if i == 0 else NAMED_OTHER - i * 0.01
            out.append(Candidate(s, base + s.entry.priority, "name", hit.label))
    return out


def query_text(prefix: str, suffix: str, query_chars: int) -> str:
    """The meaning query: the last `query_chars` of text up to the last complete sentence, and the suffix's start.

    While a sentence is being typed the query does not change, so its embedding is
    computed once and then served from the cache.
    """
    look = max(0, len(prefix) - query_chars)
    end = max(prefix.rfind(c, look) for c in ".!?\n") + 1
    if end == 0 or len(prefix) - end > query_chars // 2:  # no sentence end nearby, or a very long one: all of it
        end = len(prefix)
    start = max(0, end - query_chars)
    if start > 0:  # begin on a word
        space = prefix.find(" ", start, end)
        start = space + 1 if space != -1 else start
    return f"{prefix[start:end].strip()} {suffix[:200].strip()}".strip()


def rank(cands: list[Candidate], chapter: int | None) -> list[Candidate]:
    """Best candidate per section, chapter-filtered, best first (ties: priority, then file order)."""
    best: dict[str, Candidate] = {}
    for c in cands:
        if not c.section.entry.holds_at(chapter):
            continue
        old = best.get(c.section.id)
        if old is None or c.score > old.score:
            best[c.section.id] = c
    return sorted(best.values(), key=lambda c: (-c.score, -c.section.entry.priority, c.section.id))


def render(sections: list[Section]) -> str:
    """The lore block: one paragraph group per entry, headed `[Name (type)]`, sections in file order."""
    groups: dict[str, list[Section]] = {}
    for s in sections:
        groups.setdefault(s.entry.id, []).append(s)
    blocks = []
    for items in groups.values():
        entry: LoreEntry = items[0].entry
        order = {s.id: i for i, s in enumerate(entry.sections)}
        lines = [f"[{entry.name} ({entry.type})]"]
        for s in sorted(items, key=lambda s: order.get(s.id, 0)):
            lines.append(s.text if not s.heading or s.heading == entry.name else f"{s.heading}: {s.text}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


class TokenMeter:
    """A token counter with memory, and a cheap lower bound learned from what it counted.

    The same sections come back keystroke after keystroke, so counts are kept (`size` texts, least recently
    used dropped). `at_least(text)` is half the fewest tokens per character seen so far, times the length:
    prose varies far less than 2x in token density, so a section whose bound already exceeds the budget left
    cannot fit and needs no tokenizer pass (most candidates of a query, once the best have taken the budget).
    """

    def __init__(self, count: TokenCounter, size: int = 4096):
        self.count = count
        self.size = size
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._density: float | None = None  # fewest tokens per character seen

    def __call__(self, text: str) -> int:
        n = self._cache.get(text)
        if n is not None:
            self._cache.move_to_end(text)
            return n
        n = self._cache[text] = self.count(text)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        if text:
            d = n / len(text)
            self._density = d if self._density is None else min(self._density, d)
        return n

    def at_least(self, text: str) -> int:
        """A lower bound of the count (0 until something was counted)."""
        return int(len(text) * self._density * 0.5) if self._density else 0


def fit(ranked: list[Candidate], budget: int, count: TokenCounter, at_least: TokenCounter | None = None) -> Selection:
    """Greedy by rank: take each section that still fits; the rendered block never exceeds `budget`.

    `at_least(text)`, a cheap lower bound of `count(text)` (`TokenMeter.at_least`), skips sections that
    cannot fit the budget left without counting them.
    """
    chosen: list[Candidate] = []
    cost: dict[str, int] = {}
    used = 0
    for c in ranked:
        rendered = render([c.section])
        if at_least is not None and used + at_least(rendered) > budget:
            continue
        n = count(rendered)
        if used + n > budget:
            continue  # a smaller, lower-ranked section may still fit
        chosen.append(c)
        cost[c.section.id] = n
        used += n
    text = render([c.section for c in chosen])
    tokens = count(text) if chosen else 0
    while chosen and tokens > budget:  # merging groups can differ from the sum of parts by a few tokens
        chosen.pop()
        text = render([c.section for c in chosen])
        tokens = count(text) if chosen else 0
    entries = [
        SelectedEntry(
            id=c.section.id,
            name=c.section.entry.name,
            type=c.section.entry.type,
            file=c.section.entry.file,
            heading=c.section.heading,
            reason=c.reason,
            score=round(c.score, 3),
            tokens=cost[c.section.id],
        )
        for c in chosen
    ]
    return Selection(entries=entries, text=text, tokens=tokens)
