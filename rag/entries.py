"""Lore files -> entries and sections.

A lore file is Markdown with optional YAML front matter (`name`, `aliases`,
`type`, `tags`, `priority`, `always`, `from_chapter`, `until_chapter`, `keys`).
A file without front matter is still an entry (name from its first heading or
its file name). One file is one entry; a long entry is split into sections by
`##` headings, and a section longer than `max_section_words` into paragraph runs.

Bad files never stop the rest: `parse_file` returns the problems it found, each
naming the file (and line where there is one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penwright.errors import InputFileError, SettingsError
from penwright.yamlio import parse_yaml

TYPES = ("character", "location", "object", "lore", "style", "other")
FIELDS = ("name", "aliases", "type", "tags", "priority", "always", "from_chapter", "until_chapter", "keys")
LORE_SUFFIXES = (".md", ".markdown", ".txt")
MAX_SECTION_WORDS = 220  # ~300 tokens: one section is one injectable unit and one embedding
_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*$\r?\n?", re.S | re.M)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


@dataclass
class Section:
    id: str  # "<file>::<slug>", stable while the file and heading keep their names
    entry: LoreEntry
    heading: str
    text: str  # the section's prose, without its heading

    @property
    def embed_text(self) -> str:
        """What gets embedded: who/what it is about, then the prose."""
        head = self.entry.name if self.heading in ("", self.entry.name) else f"{self.entry.name}, {self.heading}"
        return f"{head} ({self.entry.type}): {self.text}"


@dataclass
class LoreEntry:
    file: str  # path relative to the lore folder, with forward slashes
    name: str
    type: str = "other"
    aliases: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    priority: int = 0
    always: bool = False
    from_chapter: int | None = None
    until_chapter: int | None = None
    sections: list[Section] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.file

    @property
    def text(self) -> str:
        parts = []
        for s in self.sections:
            parts.append(s.text if not s.heading or s.heading == self.name else f"{s.heading}: {s.text}")
        return "\n\n".join(parts)

    def holds_at(self, chapter: int | None) -> bool:
        """Whether the entry applies at this chapter (unknown chapter: every entry holds)."""
        if chapter is None:
            return True
        if self.from_chapter is not None and chapter < self.from_chapter:
            return False
        return self.until_chapter is None or chapter <= self.until_chapter

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "aliases": list(self.aliases),
            "tags": list(self.tags),
            "file": self.file,
            "always": self.always,
            "priority": self.priority,
            "from_chapter": self.from_chapter,
            "until_chapter": self.until_chapter,
        }


@dataclass
class ParsedFile:
    file: str
    sha: str
    entry: LoreEntry | None
    problems: list[InputFileError] = field(default_factory=list)


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def parse_file(path: Path, root: Path, max_bytes: int) -> ParsedFile:
    """Read one lore file. Never raises for bad content: problems come back in the result."""
    rel = path.relative_to(root).as_posix()
    try:
        data = path.read_bytes()
    except OSError as err:
        return ParsedFile(rel, "", None, [InputFileError(path, f"cannot be read ({err.strerror})")])
    sha = file_digest(data)
    problem = _content_problem(data, max_bytes)
    if problem:
        return ParsedFile(rel, sha, None, [InputFileError(path, problem)])
    try:
        entry, problems = parse_text(data.decode("utf-8"), rel, path)
    except InputFileError as err:
        return ParsedFile(rel, sha, None, [err])
    return ParsedFile(rel, sha, entry, problems)


def _content_problem(data: bytes, max_bytes: int) -> str | None:
    if len(data) > max_bytes:
        return (
            f"is {len(data) / 1e6:.1f} MB, more than the {max_bytes / 1e6:.1f} MB a lore file may be "
            "(split it into one file per character or place, or raise lore.max_file_bytes)"
        )
    if b"\x00" in data[:8192]:
        return "is a binary file, not Markdown or text"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"is not UTF-8 text (bad byte at offset {err.start}); save it as UTF-8"
    if not text.strip():
        return "is empty"
    return None


def parse_text(text: str, rel: str, path: Path | str | None = None) -> tuple[LoreEntry, list[InputFileError]]:
    """Parse the text of one lore file into an entry. Raises InputFileError if it cannot be used at all."""
    where = path or rel
    meta, body, body_line = _split_front_matter(text, where)
    problems: list[InputFileError] = []
    fields = _check_fields(meta, where, problems)
    body = body.strip("\n")
    title, sections = _split_sections(body)
    name = fields.pop("name", None) or title or _name_from_file(rel)
    entry = LoreEntry(file=rel, name=name, **fields)
    entry.sections = _make_sections(entry, sections)
    if not entry.sections:
        raise InputFileError(
            where,
            "has front matter but no text to inject",
            line=body_line,
            hint="Write the entry's description under the front matter; the file was skipped.",
        )
    return entry, problems


def _name_from_file(rel: str) -> str:
    stem = Path(rel).stem
    return re.sub(r"[-_]+", " ", stem).strip().title() or stem


def _split_front_matter(text: str, where: Any) -> tuple[dict, str, int]:
    m = _FRONT.match(text)
    if not m:
        if text.lstrip("\ufeff").startswith("---\n") or text.startswith("---\r\n"):
            raise InputFileError(
                where,
                "front matter starts with '---' but has no closing '---' line",
                line=1,
                hint="Close the front matter with a line of three dashes; the file was skipped.",
            )
        return {}, text, 1
    try:
        data, _ = parse_yaml(m.group(1), str(where))
    except SettingsError as err:
        detail = err.problems[0] if err.problems else "malformed YAML"
        line = _yaml_line(detail)
        raise InputFileError(
            where,
            f"broken front matter: {re.sub(r' at line [0-9]+, column [0-9]+', '', detail)}",
            line=line,
            hint="Fix the YAML between the '---' lines; the file was skipped.",
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputFileError(
            where,
            "front matter must be 'key: value' lines (name:, aliases:, type: ...)",
            line=2,
            hint="Fix the YAML between the '---' lines; the file was skipped.",
        )
    body_line = text[: m.end()].count("\n") + 1
    return data, text[m.end() :], body_line


def _yaml_line(detail: str) -> int | None:
    m = re.search(r"at line ([0-9]+)", detail)
    return int(m.group(1)) + 1 if m else None  # +1: the opening '---' line


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [s.strip() for s in str(value).split(",") if s.strip()]


def _as_chapter(key: str, value: Any, where: Any, problems: list) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        problems.append(
            InputFileError(
                where,
                f"'{key}' must be a chapter number, got {value!r}; ignored",
                hint="Use a whole number, e.g. from_chapter: 3.",
            )
        )
        return None
    return int(value)


def _check_fields(meta: dict, where: Any, problems: list[InputFileError]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in meta:
        if key not in FIELDS:
            problems.append(
                InputFileError(
                    where, f"unknown front-matter key '{key}' ignored", hint=f"Known keys: {', '.join(FIELDS)}."
                )
            )
    if meta.get("name") is not None:
        out["name"] = str(meta["name"]).strip()
    kind = str(meta.get("type") or "other").strip().lower()
    if kind not in TYPES:
        problems.append(
            InputFileError(
                where, f"unknown type '{meta.get('type')}', treated as 'other'", hint=f"Use one of: {', '.join(TYPES)}."
            )
        )
        kind = "other"
    out["type"] = kind
    out["aliases"] = _as_list(meta.get("aliases"))
    out["tags"] = _as_list(meta.get("tags"))
    out["keys"] = _as_list(meta.get("keys"))
    try:
        out["priority"] = int(meta.get("priority") or 0)
    except (TypeError, ValueError):
        problems.append(InputFileError(where, f"'priority' must be a number, got {meta.get('priority')!r}; using 0"))
        out["priority"] = 0
    always = meta.get("always", False)
    out["always"] = always is True or str(always).lower() in ("true", "yes", "1")
    out["from_chapter"] = _as_chapter("from_chapter", meta.get("from_chapter"), where, problems)
    out["until_chapter"] = _as_chapter("until_chapter", meta.get("until_chapter"), where, problems)
    return out


def _split_sections(body: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(title from a leading heading, [(heading, text)]).

    A heading on the first line is the title; the rest is cut at the highest
    remaining heading level, and the text before the first cut is the lead.
    """
    headings = list(_HEADING.finditer(body))
    title, start = None, 0
    if headings and not body[: headings[0].start()].strip():
        title, start = headings[0].group(2).strip(), headings[0].end()
        headings = headings[1:]
    level = min((len(h.group(1)) for h in headings), default=0)
    sections: list[tuple[str, str]] = []
    heading = title or ""
    for h in headings:
        if len(h.group(1)) != level:
            continue
        sections.append((heading, body[start : h.start()].strip()))
        heading, start = h.group(2).strip(), h.end()
    sections.append((heading, body[start:].strip()))
    return title, [(h, t) for h, t in sections if t]


def _chunks(text: str, max_words: int) -> list[str]:
    """Paragraph runs of at most ~max_words words (a single huge paragraph is cut by words)."""
    out, cur, n = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        while len(words) > max_words:  # one enormous paragraph
            if cur:
                out.append("\n\n".join(cur))
                cur, n = [], 0
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if not words:
            continue
        if n + len(words) > max_words and cur:
            out.append("\n\n".join(cur))
            cur, n = [], 0
        cur.append(para.strip() if len(para.split()) == len(words) else " ".join(words))
        n += len(words)
    if cur:
        out.append("\n\n".join(cur))
    return out


def _make_sections(entry: LoreEntry, parts: list[tuple[str, str]]) -> list[Section]:
    sections: list[Section] = []
    used: set[str] = set()
    for i, (heading, text) in enumerate(parts):
        base = "lead" if i == 0 and (not heading or heading == entry.name) else slugify(heading)
        for j, chunk in enumerate(_chunks(text, MAX_SECTION_WORDS)):
            slug = base if j == 0 else f"{base}-{j + 1}"
            while slug in used:
                slug += "-x"
            used.add(slug)
            sections.append(Section(id=f"{entry.file}::{slug}", entry=entry, heading=heading, text=chunk))
    return sections


def lint(entries: list[LoreEntry]) -> list[str]:
    """Problems across entries: duplicate names, aliases claimed by two entries, bad chapter ranges."""
    problems: list[str] = []
    owner: dict[str, LoreEntry] = {}
    for e in sorted(entries, key=lambda e: e.file):
        if e.from_chapter is not None and e.until_chapter is not None and e.until_chapter < e.from_chapter:
            problems.append(
                f"{e.file}: until_chapter {e.until_chapter} is before from_chapter {e.from_chapter}; "
                "the entry never applies"
            )
        for label in [e.name, *e.aliases]:
            key = label.casefold()
            first = owner.get(key)
            if first is None:
                owner[key] = e
            elif first is not e:
                what = "name" if label == e.name and key == first.name.casefold() else "alias"
                problems.append(
                    f"{e.file}: {what} '{label}' is also claimed by {first.file} ('{first.name}'); "
                    "rename one, or merge the two entries"
                )
    return problems
