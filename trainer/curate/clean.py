"""Cleaning manuscript text down to prose: paragraphs grouped into scenes.

What goes: front matter (title page, dedication, contents, preface before the
first chapter), copyright pages, chapter headings, footnotes and their markers,
markdown/HTML markup, author notes (TODO lines, `[[...]]`, comments) and end
matter after THE END. Hard-wrapped lines are unwrapped into paragraphs. Scene
breaks and chapter headings become hard boundaries: the result is a list of
scenes, each a list of paragraphs, and no chunk is ever built across two scenes.

Cleaning depends on nothing but the text (no tokenizer, no settings), so its
result is cached per file content and reused by the watcher's word counts.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field

CLEAN_VERSION = 4  # bump when the rules change: invalidates cached results

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|first|second|third|fourth|fifth|sixth|"
    "seventh|eighth|ninth|tenth|last|the\\s+\\w+"
)
_CHAPTER = re.compile(
    rf"^(chapter|book|part|volume|canto|section)\s+([ivxlcdm]+\b|\d+\b|(?:{_NUMBER_WORDS})\b)[^\n]{{0,70}}$", re.I
)
_NAMED_SECTION = re.compile(
    r"^(prologue|epilogue|preface|introduction|foreword|afterword|interlude|contents|table of contents|"
    r"acknowledge?ments?|dedication|appendix|about the author|also by [^\n]{0,40}|the end|finis|end)"
    r"\b[.:]?[^\n]{0,60}$",
    re.I,
)
_ROMAN_OR_NUMBER = re.compile(r"^(?:[IVXLC]+\.(?:\s+[^\n]{1,70})?|[IVXLC]+|\d{1,3}\.?)$")
_END = re.compile(r"^(the end|finis|end|the end\.|finis\.)$", re.I)
_SCENE_BREAK = re.compile(r"^[*#~•·◆◇§+=_\-\s]+$")
_MD_HEADING = re.compile(r"^#{1,6}\s+\S")
_MD_LIST = re.compile(r"^\s*(?:[-+*]|\d{1,3}[.)])\s+\S")
_TABLE = re.compile(r"^\s*\|.*\|\s*$")
_NOTE_LINE = re.compile(r"^\s*(?:TODO|FIXME|XXX|TK|NOTE TO SELF|NOTE|NB)\b[:!\-\s]", re.I)
_COMMENT_LINE = re.compile(r"^\s*(?://|%%)")
_COPYRIGHT = re.compile(
    r"copyright|©|\(c\)\s*\d{4}|all rights reserved|\bisbn\b|printed in|first published|published by|"
    r"project gutenberg|this is a work of fiction|no part of this (?:book|publication)",
    re.I,
)
_SENTENCE_END = tuple(".!?\"”’'…)]:;,—-")

# Whole-text substitutions, applied before lines are classified: (category, pattern, replacement)
_BLOCK_RULES: list[tuple[str, re.Pattern, str]] = [
    ("front_matter", re.compile(r"\A\s*(?:---\n.*?\n---|\+\+\+\n.*?\n\+\+\+)\s*\n", re.S), "\n"),
    ("comments", re.compile(r"<!--.*?-->", re.S), ""),
    ("comments", re.compile(r"%%.*?%%", re.S), ""),
    ("notes", re.compile(r"\[\[[^\[\]]*\]\]"), ""),
    ("code", re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M), ""),
    ("footnotes", re.compile(r"^\[\^[^\]]+\]:[^\n]*(?:\n(?: {2,}|\t)[^\n]*)*", re.M), ""),
    ("footnotes", re.compile(r"\[\^[^\]]+\]"), ""),
    ("footnotes", re.compile(r"\[(?:Footnote|Note)\b[^\]]*\]", re.S | re.I), ""),
    ("footnotes", re.compile(r"(?<=[\w.,;:!?'\"”’])\[\d{1,3}\]|\{\d{1,3}\}"), ""),
    ("footnotes", re.compile(r"^\s*\[\d{1,3}\][^\n]*(?:\n(?!\s*\n)[^\n]*)*", re.M), ""),
    ("footnotes", re.compile(r"(?<=[A-Za-z.,;:!?'\"”’])[¹²³⁴⁵⁶⁷⁸⁹⁰]+"), ""),
    ("notes", re.compile(r"[\[({]\s*(?:TODO|FIXME|XXX|TK|NOTE)\b[^\])}\n]*[\])}]", re.I), ""),
    ("markup", re.compile(r"<br\s*/?>", re.I), "\n"),
    ("markup", re.compile(r"</p\s*>|</div\s*>|<p(?:\s[^>]*)?>", re.I), "\n\n"),
    ("markup", re.compile(r"<(?:script|style)\b.*?</(?:script|style)\s*>", re.S | re.I), ""),
    ("markup", re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),
]
# Inline markdown, applied to each joined paragraph.
_INLINE_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"(?<=[\w.,;:!?'\"”’])[*†‡]+(?=[\s.,;:!?'\"”’]|$)"), ""),  # footnote markers: word*
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!])"), r"\1"),
    (re.compile(r"[ \u00a0]{2,}"), " "),
]
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


@dataclass
class CleanText:
    """Prose of one file: scenes of paragraphs, plus what was removed (for the manifest)."""

    scenes: list[list[str]]
    removed: Counter = field(default_factory=Counter)

    @property
    def paragraphs(self) -> list[str]:
        return [p for scene in self.scenes for p in scene]

    @property
    def words(self) -> int:
        return sum(len(p.split()) for p in self.paragraphs)

    def text(self) -> str:
        return "\n\n".join("\n\n".join(s) for s in self.scenes)


def clean(text: str, markdown: bool = True) -> CleanText:
    """Clean a manuscript's text to scenes of prose paragraphs."""
    removed: Counter = Counter()
    text = _normalise(text)
    text = _gutenberg_body(text, removed)
    for category, pattern, repl in _BLOCK_RULES:
        text, n = pattern.subn(repl, text)
        removed[category] += n
    items = _classify(text.split("\n"), markdown, removed)
    items = _drop_front_and_end_matter(items, removed)
    scenes: list[list[str]] = [[]]
    for kind, value in items:
        if kind == "para":
            scenes[-1].append(value)
        elif scenes[-1]:
            scenes.append([])
    return CleanText([s for s in scenes if s], +removed)


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE)
    return text.replace("\t", "    ").replace("\u00a0", " ")


def _gutenberg_body(text: str, removed: Counter) -> str:
    start = re.search(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG[^\n]*$", text, re.M | re.I)
    if start:
        text = text[start.end() :]
        removed["front_matter"] += 1
    end = re.search(r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG[^\n]*$", text, re.M | re.I)
    if end:
        text = text[: end.start()]
        removed["end_matter"] += 1
    return text


def _classify(lines: list[str], markdown: bool, removed: Counter) -> list[tuple[str, str]]:
    """Lines -> items: ("para", text) | ("heading", text) | ("break", "")."""
    items: list[tuple[str, str]] = []
    block: list[str] = []
    indent_paragraphs, line_paragraphs = _paragraph_style(lines)

    def flush() -> None:
        if block:
            items.extend(_block_items(block, removed))
            block.clear()

    for raw in lines:
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        if _NOTE_LINE.match(stripped) or _COMMENT_LINE.match(stripped):
            removed["notes"] += 1
            continue
        if _SCENE_BREAK.match(stripped):
            flush()
            items.append(("break", ""))
            continue
        if markdown and (_MD_LIST.match(line) or _TABLE.match(line)):
            removed["lists"] += 1  # notes, outlines and tables are not prose
            continue
        if _MD_HEADING.match(stripped):
            flush()
            items.append(("heading", stripped.lstrip("#").strip()))
            continue
        if stripped.startswith(">"):
            stripped = stripped.lstrip("> ").strip()
            line = stripped
        if block and (line_paragraphs or (indent_paragraphs and raw[:1] == " ")):
            flush()
        block.append(stripped)
    flush()
    return items


def _paragraph_style(lines: list[str]) -> tuple[bool, bool]:
    """How paragraphs are marked when blank lines are scarce: by indentation, or one per line."""
    nonblank = [ln for ln in lines if ln.strip()]
    blanks = len(lines) - len(nonblank)
    if len(nonblank) < 4 or blanks >= 0.1 * len(nonblank):
        return False, False
    indented = sum(1 for ln in nonblank if ln.startswith((" ", "\t")))
    if indented >= 0.1 * len(nonblank):
        return True, False
    lengths = sorted(len(ln) for ln in nonblank)
    return False, lengths[len(lengths) // 2] > 120


def _block_items(block: list[str], removed: Counter) -> list[tuple[str, str]]:
    """One blank-line-separated block -> heading / paragraph items."""
    if len(block) == 1 and _is_heading(block[0]):
        return [("heading", block[0])]
    if _CHAPTER.match(block[0]) and len(block) <= 3 and all(len(b) < 80 for b in block):
        return [("heading", " ".join(block))]
    if _is_list_block(block):
        removed["lists"] += 1
        return [("break", "")]
    if re.match(r"^[*†‡]+\s?\w", block[0]) and "*" not in " ".join(block)[1:]:
        removed["footnotes"] += 1  # "*Vide a letter from..." : a footnote's text
        return [("break", "")]
    para = _unwrap(block)
    for pattern, repl in _INLINE_RULES:
        para = pattern.sub(repl, para)
    if "&" in para:
        para = html.unescape(para)
    para = para.strip()
    if not para or not re.search(r"[^\W\d_]", para):
        return []
    if _COPYRIGHT.search(para) and len(para.split()) < 120:
        removed["copyright"] += 1
        return [("break", "")]
    return [("para", para)]


def _is_heading(line: str) -> bool:
    if _CHAPTER.match(line) or _NAMED_SECTION.match(line) or _ROMAN_OR_NUMBER.match(line):
        return True
    words = line.split()
    letters = [c for c in line if c.isalpha()]
    if (
        letters
        and all(c.isupper() for c in letters)
        and len(words) <= 12
        and (len(letters) > 1 or len(words) == 1 and not line.startswith(("I ", "A ")))
    ):
        return line not in ("I", "A", "O")
    if len(words) <= 8 and not line.endswith(_SENTENCE_END) and not line.startswith(('"', "“", "'", "‘", "—", "-")):
        capitalised = sum(1 for w in words if w[:1].isupper())
        return capitalised >= max(1, len(words) // 2)
    return False


def _is_list_block(block: list[str]) -> bool:
    """A contents list, index or similar: several short lines, hardly any ending a sentence."""
    if len(block) < 3 or any(len(b) > 60 for b in block):
        return False
    ends = sum(1 for b in block if b.endswith(tuple('.!?"”’')))
    return ends < 0.3 * len(block)


def _unwrap(lines: list[str]) -> str:
    out = lines[0]
    for nxt in lines[1:]:
        if out.endswith("--") or out.endswith("—"):
            out += nxt
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and nxt[:1].islower():
            out += nxt  # a compound split at the line end keeps its hyphen: "well-\nknown" -> "well-known"
        else:
            out += " " + nxt
    return out


def _chapterish(kind: str, value: str) -> bool:
    return kind == "heading" and bool(
        _CHAPTER.match(value) or _ROMAN_OR_NUMBER.match(value) or re.match(r"^(prologue|chapter)\b", value, re.I)
    )


def _drop_front_and_end_matter(items: list[tuple[str, str]], removed: Counter) -> list[tuple[str, str]]:
    """Drop everything before the first chapter heading and after THE END, when that is a small share."""
    total = sum(len(v.split()) for k, v in items if k == "para") or 1
    first = next((i for i, (k, v) in enumerate(items) if _chapterish(k, v)), None)
    if first is not None:
        before = sum(len(v.split()) for k, v in items[:first] if k == "para")
        if before <= 0.15 * total:
            removed["front_matter"] += sum(1 for k, _ in items[:first] if k == "para")
            items = items[first:]
    end = next((i for i, (k, v) in enumerate(items) if k == "heading" and _END.match(v)), None)
    if end is not None:
        after = sum(len(v.split()) for k, v in items[end:] if k == "para")
        if after <= 0.15 * total:
            removed["end_matter"] += sum(1 for k, _ in items[end:] if k == "para")
            items = items[:end]
    headings = sum(1 for k, _ in items if k == "heading")
    removed["headings"] += headings
    return items
