"""Name, alias and key triggers: which entries a passage mentions.

Matching is word-boundary aware and tolerant of markup between words
("the *Gannet*" matches "the Gannet"). Guards against false hits, the
World-Info complaint that short keys ("Red") fire everywhere:

- a key shorter than `min_key_length` characters never triggers on its own;
- a single common English word (wordfreq Zipf frequency >= `common_zipf`) used as
  a name ("Rose", "Will") triggers only written exactly so, capitalised, and not
  at the start of a sentence, where every word is capitalised; written in lower
  case ("light") it never triggers: use a longer phrase or a /regex/;
- any other key matches case-insensitively.

`/pattern/flags` keys are regular expressions (flags: i, m, s), used as written.
Lookup is by each key's first word, so a query costs one pass over the passage's
words whatever the number of entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_OPENERS = " \t*_\"'\u201c\u2018(["
_ENDERS = ".!?:;\n\u2014"
_REGEX_KEY = re.compile(r"^/(.+)/([ims]*)$", re.S)


@dataclass(frozen=True)
class Key:
    entry_id: str
    label: str
    pattern: re.Pattern
    exact_case: bool = False  # a common word used as a name: capitalised, not sentence-initial
    is_regex: bool = False


@dataclass(frozen=True)
class Hit:
    entry_id: str
    label: str
    end: int  # where the last mention ends in the scanned text (nearer the cursor = larger)


class KeyMatcher:
    def __init__(self, min_key_length: int = 3, common_zipf: float = 4.0):
        self.min_key_length = min_key_length
        self.common_zipf = common_zipf
        self._by_word: dict[str, list[Key]] = {}
        self._regex: list[Key] = []
        self._by_entry: dict[str, list[Key]] = {}
        self._zipf_cache: dict[str, float] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_entry.values())

    def add(self, entry_id: str, labels: list[str]) -> list[str]:
        """Index an entry's triggers; returns why some labels will never trigger."""
        self.remove(entry_id)
        keys, notes = [], []
        for label in dict.fromkeys(label.strip() for label in labels if label and label.strip()):
            key, note = self._compile(entry_id, label)
            if note:
                notes.append(note)
            if key is None:
                continue
            keys.append(key)
            if key.is_regex:
                self._regex.append(key)
            else:
                first = _WORD.search(label).group().casefold()
                self._by_word.setdefault(first, []).append(key)
        self._by_entry[entry_id] = keys
        return notes

    def remove(self, entry_id: str) -> None:
        keys = self._by_entry.pop(entry_id, [])
        for key in keys:
            if key.is_regex:
                self._regex.remove(key)
            else:
                bucket = self._by_word.get(_WORD.search(key.label).group().casefold(), [])
                if key in bucket:
                    bucket.remove(key)

    def _zipf(self, word: str) -> float:
        if word not in self._zipf_cache:
            from wordfreq import zipf_frequency

            self._zipf_cache[word] = zipf_frequency(word, "en")
        return self._zipf_cache[word]

    def _compile(self, entry_id: str, label: str) -> tuple[Key | None, str | None]:
        rx = _REGEX_KEY.match(label)
        if rx:
            flags = sum({"i": re.I, "m": re.M, "s": re.S}[f] for f in set(rx.group(2)))
            try:
                return Key(entry_id, label, re.compile(rx.group(1), flags), is_regex=True), None
            except re.error as err:
                return None, f"key {label} is not a valid regular expression ({err}); it never triggers"
        words = _WORD.findall(label)
        if not words:
            return None, f"key '{label}' has no letters or digits; it never triggers"
        if len("".join(words)) < self.min_key_length:
            return None, (
                f"key '{label}' is shorter than lore.min_key_length ({self.min_key_length}) "
                "and never triggers on its own"
            )
        body = r"\W+".join(re.escape(w) for w in words)
        common = len(words) == 1 and self._zipf(words[0].casefold()) >= self.common_zipf
        if common and not words[0][0].isupper():
            return None, (
                f"key '{label}' is a common word and never triggers on its own; use a longer phrase or a /regex/"
            )
        flags = 0 if common else re.I
        return Key(entry_id, label, re.compile(rf"(?<!\w){body}(?!\w)", flags), exact_case=common), None

    def find(self, text: str) -> dict[str, Hit]:
        """{entry id: its mention nearest the end of `text`}."""
        hits: dict[str, Hit] = {}

        def note(key: Key, end: int) -> None:
            old = hits.get(key.entry_id)
            if old is None or end > old.end:
                hits[key.entry_id] = Hit(key.entry_id, key.label, end)

        for m in _WORD.finditer(text):
            for key in self._by_word.get(m.group().casefold(), ()):
                found = key.pattern.match(text, m.start())
                if not found:
                    continue
                if key.exact_case and _sentence_initial(text, m.start()):
                    continue
                note(key, found.end())
        for key in self._regex:
            last = None
            for last in key.pattern.finditer(text):  # noqa: B007 (the last match is wanted)
                pass
            if last is not None:
                note(key, last.end())
        return hits


def _sentence_initial(text: str, pos: int) -> bool:
    """Whether the word at `pos` starts a sentence (or a line, or a quotation)."""
    start = max(0, pos - 12)
    before = text[start:pos].rstrip(_OPENERS)
    if not before:
        return start == 0 or text[start - 1] in _ENDERS  # only markup in a 12-character window: guess
    return before[-1] in _ENDERS or before[-1] in '\u201c\u2018"'
