"""Prose helpers: read a document safely, cut prefix/suffix within a budget, infer the chapter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types

MAX_DISK_BYTES = 20_000_000  # a closed file larger than this is not read from disk

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_HEADING = re.compile(r"^\s{0,3}#{1,3}\s*(?:chapter|ch\.?)\s+([0-9]+|[a-z]+)\b", re.I | re.M)
_FILE_CHAPTER = re.compile(r"(?:chapter|ch)[-_ ]?0*([0-9]{1,3})|^0*([0-9]{1,3})(?=[-_. ])", re.I)


@dataclass
class Context:
    prefix: str
    suffix: str
    offset: int  # cursor, in code points of the whole text


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def document_text(ls, uri: str) -> str | None:
    """The open document's text; for a closed file, its content read leniently; None if unknown."""
    doc = ls.workspace.text_documents.get(uri) or ls.workspace.text_documents.get(unquote(uri))
    if doc is not None:
        return doc.source
    path = uri_to_path(uri)
    try:
        if path is None or not path.is_file() or path.stat().st_size > MAX_DISK_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # other encodings: best effort, never a crash


def offset_at(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """Code-point offset of an LSP position; past the end of a line or the text clamps to the end."""
    line_no = max(position.line, 0)
    start = 0
    for _ in range(line_no):
        nl = text.find("\n", start)
        if nl < 0:
            return len(text)
        start = nl + 1
    end = text.find("\n", start)
    line = text[start : len(text) if end < 0 else end]
    units = 0
    for i, ch in enumerate(line):
        if units >= position.character:
            return start + i
        units += _units(ch, encoding)
    return start + len(line)


def _units(ch: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(ch.encode("utf-8"))
    if encoding == "utf-32":
        return 1
    return 2 if ord(ch) > 0xFFFF else 1


def context_at(text: str, offset: int, prefix_chars: int, suffix_chars: int) -> Context:
    """Prefix/suffix around `offset`, cut at whitespace so no word is sent in half."""
    prefix = text[max(0, offset - prefix_chars) : offset]
    if offset > prefix_chars:
        cut = prefix.find(" ")
        prefix = prefix[cut + 1 :] if 0 <= cut < 40 else prefix
    suffix = text[offset : offset + suffix_chars]
    if offset + suffix_chars < len(text):
        cut = suffix.rfind(" ")
        suffix = suffix[:cut] if cut > len(suffix) - 40 else suffix
    return Context(prefix=prefix, suffix=suffix, offset=offset)


def infer_chapter(uri: str, text: str, offset: int) -> int | None:
    """Chapter number: the last 'Chapter N' heading before the cursor, else the file name (`03-...`, `chapter-3`)."""
    before = text[:offset]
    headings = list(_HEADING.finditer(before[-200_000:]))
    if headings:
        word = headings[-1].group(1).lower()
        if word.isdigit():
            return int(word)
        if word in _NUMBER_WORDS:
            return _NUMBER_WORDS[word]
    name = Path(unquote(urlparse(uri).path)).name
    m = _FILE_CHAPTER.search(name)
    if m:
        return int(m.group(1) or m.group(2))
    return None


def line_at(text: str, line_no: int) -> str:
    lines = text.split("\n")
    return lines[line_no] if 0 <= line_no < len(lines) else ""


def name_at(line: str, column: int, names: list[str]) -> tuple[str, int, int] | None:
    """The longest lore name/alias occurring in `line` that covers `column`: (name, start, end)."""
    for name in sorted(names, key=len, reverse=True):
        pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])", re.I if name[:1].isupper() else 0)
        for m in pattern.finditer(line):
            if m.start() <= column <= m.end():
                return name, m.start(), m.end()
    return None


def typed_name_prefix(line_before: str, max_words: int = 4) -> list[str]:
    """Candidate name prefixes ending at the cursor, longest first: 'Maren V', 'V'."""
    m = re.search(r"([\w'’]+(?:[ \t][\w'’]*){0,%d})$" % (max_words - 1), line_before)
    if not m:
        return []
    words = m.group(1)
    out = []
    for i, ch in enumerate(words):
        if i == 0 or (words[i - 1] in " \t" and ch not in " \t"):
            out.append(words[i:])
    return out
