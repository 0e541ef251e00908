"""Importing lore written elsewhere into Penwright lore files (Markdown with front matter).

- `import_notes(folder, out)`: plain notes, one file per character or place as
  most authors keep them. The name comes from the first heading, a `Name:` line
  or the file name; `Aliases:` / `Also known as:` lines become aliases; the type
  is guessed from the folder (characters/, places/, ...).
- `import_lorebook(path, out)`: a SillyTavern World Info file (`{"entries": {...}}`),
  a character-card book (`{"data": {"character_book": {...}}}`) or any JSON with
  an `entries` list of `{keys, content}` (Continue/SillyTavern style).

Both only write into `out`, never over an existing file, and never modify the source.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from penwright.errors import LoreError
from penwright.rag.entries import LORE_SUFFIXES, TYPES, slugify

_FOLDER_TYPES = {
    "character": "character",
    "characters": "character",
    "people": "character",
    "cast": "character",
    "place": "location",
    "places": "location",
    "location": "location",
    "locations": "location",
    "settings": "location",
    "object": "object",
    "objects": "object",
    "items": "object",
    "item": "object",
    "artifacts": "object",
    "lore": "lore",
    "history": "lore",
    "world": "lore",
    "worldbuilding": "lore",
    "magic": "lore",
    "style": "style",
}
_FIELD_LINE = re.compile(r"^\s*(name|aliases|also known as|aka|type|tags)\s*:\s*(.+?)\s*$", re.I | re.M)


@dataclass
class ImportReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _write_entry(out: Path, meta: dict[str, Any], body: str, report: ImportReport) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base = slugify(meta["name"])
    path, n = out / f"{base}.md", 2
    while path.exists():
        path, n = out / f"{base}-{n}.md", n + 1
    front = yaml.safe_dump(
        {k: v for k, v in meta.items() if v not in (None, [], "", False, 0)},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
    ).strip()
    path.write_text(f"---\n{front}\n---\n# {meta['name']}\n\n{body.strip()}\n", encoding="utf-8")
    report.written.append(path)


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,;]", value) if v.strip()]


def import_notes(folder: Path, out: Path) -> ImportReport:
    """Plain note files -> lore entries in `out`."""
    folder, report = Path(folder), ImportReport()
    if not folder.is_dir():
        raise LoreError(f"{folder} is not a folder.", "Pass the folder that holds your notes, one file per entry.")
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in LORE_SUFFIXES):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (UnicodeDecodeError, OSError) as err:
            report.skipped.append(f"{path}: cannot be read as UTF-8 text ({err})")
            continue
        if not text:
            report.skipped.append(f"{path}: is empty")
            continue
        meta, body = _note_fields(text, path, folder)
        if not body:
            report.skipped.append(f"{path}: has no text besides its name")
            continue
        _write_entry(out, meta, body, report)
    return report


def _note_fields(text: str, path: Path, folder: Path) -> tuple[dict[str, Any], str]:
    if text.startswith("---"):  # already has front matter: keep it, drop the block from the body
        parts = text.split("\n---", 1)
        text = parts[1].split("\n", 1)[1] if len(parts) == 2 and "\n" in parts[1] else text
    name, aliases, kind, tags = None, [], None, []
    lines = text.splitlines()
    if lines and lines[0].startswith("#"):
        name, lines = lines[0].lstrip("#").strip(), lines[1:]
    body_lines = []
    for line in lines:
        m = _FIELD_LINE.match(line) if len(body_lines) < 12 else None  # fields sit at the top of a note
        if m is None:
            body_lines.append(line)
            continue
        key, value = m.group(1).lower(), m.group(2)
        if key == "name":
            name = name or value
        elif key == "type":
            kind = value.lower() if value.lower() in TYPES else kind
        elif key == "tags":
            tags = _split_list(value)
        else:
            aliases += _split_list(value)
    rel_parts = [p.lower() for p in path.relative_to(folder).parts[:-1]]
    kind = kind or next((_FOLDER_TYPES[p] for p in reversed(rel_parts) if p in _FOLDER_TYPES), "other")
    name = name or re.sub(r"[-_]+", " ", path.stem).strip().title()
    return {"name": name, "aliases": aliases, "type": kind, "tags": tags}, "\n".join(body_lines).strip()


def _lorebook_entries(data: Any) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get("data"), dict):  # character card v2/v3
        data = data["data"].get("character_book") or data["data"]
    entries = data.get("entries") if isinstance(data, dict) else data
    if isinstance(entries, dict):  # SillyTavern World Info: {"0": {...}, "1": {...}}
        entries = [entries[k] for k in sorted(entries, key=lambda k: (len(str(k)), str(k)))]
    if not isinstance(entries, list):
        raise LoreError(
            "The JSON file has no lorebook entries (expected an 'entries' list or object).",
            'Export the lorebook from SillyTavern (World Info) or pass a {"entries": [...]} file.',
        )
    return entries


def _first_words(text: str, n: int = 4) -> str:
    return " ".join(text.split()[:n]).rstrip(".,;:!?")


def _regex_key(key: str) -> str:
    """A JavaScript-style /pattern/flags key, keeping only the flags Python shares (i, m, s)."""
    body, _, flags = key[1:].rpartition("/")
    return f"/{body}/{''.join(f for f in flags if f in 'ims')}"


def import_lorebook(path: Path, out: Path) -> ImportReport:
    """A JSON lorebook -> lore entries in `out`."""
    path, report = Path(path), ImportReport()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoreError(
            f"{path} is not a readable JSON lorebook ({err}).", "Check the file, or export it again."
        ) from None
    for i, e in enumerate(_lorebook_entries(data)):
        label = f"{path}: entry {i}"
        if not isinstance(e, dict):
            report.skipped.append(f"{label}: not an object")
            continue
        content = str(e.get("content") or "").strip()
        if e.get("disable") is True or e.get("enabled") is False:
            report.skipped.append(f"{label}: disabled in the lorebook")
            continue
        if not content:
            report.skipped.append(f"{label}: has no content")
            continue
        keys = e.get("key", e.get("keys")) or []
        keys = _split_list(keys) if isinstance(keys, str) else [str(k).strip() for k in keys if str(k).strip()]
        plain = [k for k in keys if not (k.startswith("/") and k.rstrip("gimsuy").endswith("/") and len(k) > 2)]
        name = str(e.get("comment") or e.get("name") or (plain[0] if plain else "") or _first_words(content)).strip()
        meta = {
            "name": name,
            "aliases": [k for k in plain if k.casefold() != name.casefold()],
            "type": "other",
            "priority": int(e.get("priority") or 0) if str(e.get("priority") or 0).lstrip("-").isdigit() else 0,
            "always": bool(e.get("constant")),
            "keys": [_regex_key(k) for k in keys if k not in plain],
        }
        secondary = e.get("keysecondary") or e.get("secondary_keys") or []
        if secondary:
            report.skipped.append(
                f"{label} ('{name}'): secondary keys {secondary} have no equivalent and were left out"
            )
        _write_entry(out, meta, content, report)
    return report
