"""Lore in the editor: name completion, hover (the trimmed entry + a link), definition (the lore file).

Names and aliases come from the daemon's `/api/lore/names` (one lore index for
every client), cached here for a short while and refreshed on `lore.indexed` events.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from lsprotocol import types

from penwright.server.lsp.daemon import DaemonError, DaemonUnavailable
from penwright.server.lsp.text import document_text, line_at, name_at, offset_at, typed_name_prefix

log = logging.getLogger(__name__)

NAMES_TTL_S = 30.0
HOVER_CHARS = 600
KINDS = {
    "character": types.CompletionItemKind.Class,
    "location": types.CompletionItemKind.Module,
    "place": types.CompletionItemKind.Module,
    "object": types.CompletionItemKind.Constant,
    "lore": types.CompletionItemKind.Reference,
}


def register(ls) -> None:
    @ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    async def completion(ls, params: types.CompletionParams) -> types.CompletionList:
        return await complete_names(ls, params)

    @ls.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls, params: types.HoverParams) -> types.Hover | None:
        return await hover_name(ls, params)

    @ls.feature(types.TEXT_DOCUMENT_DEFINITION)
    async def definition(ls, params: types.DefinitionParams) -> list[types.Location]:
        found = await _entry_under_cursor(ls, params.text_document.uri, params.position)
        if found is None or (path := entry_path(ls, found[0])) is None:
            return []
        return [types.Location(uri=path.as_uri(), range=types.Range(types.Position(0, 0), types.Position(0, 0)))]


async def lore_names(ls, uri: str | None = None) -> dict[str, dict]:
    """{name or alias: entry summary}; empty when the daemon is down (never raises)."""
    cache = ls.lore_names
    if cache.names and time.monotonic() - cache.fetched_at < NAMES_TTL_S:
        return cache.names
    if uri:
        ls.root_for(uri)
    try:
        result = await ls.daemon.request("GET", "/api/lore/names")
    except (DaemonUnavailable, DaemonError) as err:
        log.info("lore names unavailable: %s", err)
        return cache.names
    names: dict[str, dict] = {}
    items = result.get("names", result.get("entries", [])) if isinstance(result, dict) else result
    for item in items if isinstance(items, list) else []:
        entry = item if isinstance(item, dict) else {"name": str(item)}
        for n in [entry.get("name"), *(entry.get("aliases") or [])]:
            if isinstance(n, str) and n.strip():
                names.setdefault(n.strip(), entry)
    cache.names, cache.fetched_at = names, time.monotonic()
    return names


async def complete_names(ls, params: types.CompletionParams) -> types.CompletionList:
    text = document_text(ls, params.text_document.uri)
    if text is None:
        return types.CompletionList(is_incomplete=False, items=[])
    names = await lore_names(ls, params.text_document.uri)
    offset = offset_at(text, params.position, ls.position_encoding)
    line_before = text[text.rfind("\n", 0, offset) + 1 : offset]
    items, seen = [], set()
    for typed in typed_name_prefix(line_before):  # longest first: 'Maren V' before 'V'
        if len(typed) < 1:
            continue
        for name, entry in names.items():
            if name in seen or not name.lower().startswith(typed.lower()) or name == typed:
                continue
            seen.add(name)
            start = types.Position(
                params.position.line, params.position.character - _units(typed, ls.position_encoding)
            )
            items.append(_item(name, entry, types.Range(start, params.position)))
    return types.CompletionList(is_incomplete=False, items=items[:50])


def _units(s: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(s.encode("utf-8"))
    return len(s) if encoding == "utf-32" else len(s.encode("utf-16-le")) // 2


def _item(name: str, entry: dict, rng: types.Range) -> types.CompletionItem:
    main = entry.get("name") or name
    kind = str(entry.get("type") or "lore")
    detail = kind if main == name else f"{kind}: alias of {main}"
    return types.CompletionItem(
        label=name,
        kind=KINDS.get(kind, types.CompletionItemKind.Text),
        detail=detail,
        text_edit=types.TextEdit(range=rng, new_text=name),
        filter_text=name,
        sort_text=f"{0 if main == name else 1}{name}",
    )


async def _entry_under_cursor(ls, uri: str, position: types.Position) -> tuple[dict, str, types.Range] | None:
    text = document_text(ls, uri)
    if text is None:
        return None
    names = await lore_names(ls, uri)
    line = line_at(text, position.line)
    column = offset_at(text, position, ls.position_encoding) - offset_at(text, types.Position(position.line, 0))
    hit = name_at(line, column, list(names))
    if hit is None:
        return None
    name, start, end = hit
    key = next((n for n in names if n.lower() == name.lower()), name)
    rng = types.Range(
        types.Position(position.line, _units(line[:start], ls.position_encoding)),
        types.Position(position.line, _units(line[:end], ls.position_encoding)),
    )
    return names[key], name, rng


async def hover_name(ls, params: types.HoverParams) -> types.Hover | None:
    found = await _entry_under_cursor(ls, params.text_document.uri, params.position)
    if found is None:
        return None
    entry, name, rng = found
    body = await _entry_text(ls, entry)
    title = f"**{entry.get('name') or name}** ({entry.get('type') or 'lore'})"
    aliases = [a for a in entry.get("aliases") or [] if isinstance(a, str)]
    parts = [title + (f" — also {', '.join(aliases)}" if aliases else "")]
    if body:
        parts.append(trim(body))
    path = entry_path(ls, entry)
    if path is not None:
        parts.append(f"[{_relative(ls, path)}]({path.as_uri()})")
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(parts)), range=rng
    )


async def _entry_text(ls, entry: dict) -> str:
    try:
        found = await ls.daemon.request("GET", "/api/lore/lookup", params={"name": entry.get("name", "")})
        if isinstance(found, dict):
            found = found.get("entry", found)
            for key in ("text", "content", "body"):
                if isinstance(found.get(key), str) and found[key].strip():
                    return found[key]
    except (DaemonUnavailable, DaemonError) as err:
        log.info("lore lookup failed: %s", err)
    path = entry_path(ls, entry)
    try:
        return strip_front_matter(path.read_text(encoding="utf-8", errors="replace")) if path else ""
    except OSError:
        return ""


def entry_path(ls, entry: dict) -> Path | None:
    raw = entry.get("path") or entry.get("file")
    if not isinstance(raw, str) or not raw:
        return None
    p = Path(raw)
    if p.is_absolute():
        return p
    if ls.root is None:
        return None
    folder = "lore"
    try:
        from penwright.project import load_project

        folder = load_project(ls.root).settings.lore.folder
    except Exception as err:  # a broken penwright.yaml is reported by the daemon; the default folder still works
        log.debug("cannot read %s/penwright.yaml, lore folder %r assumed: %s", ls.root, folder, err)
    return (ls.root / folder / p).resolve()


def _relative(ls, path: Path) -> str:
    try:
        return str(path.relative_to(ls.root)) if ls.root else path.name
    except ValueError:
        return path.name


def strip_front_matter(text: str) -> str:
    m = re.match(r"^---\s*\n.*?\n---\s*\n", text, re.S)
    return text[m.end() :] if m else text


def trim(text: str, limit: int = HOVER_CHARS) -> str:
    """Hover shows the start of the entry, cut at a sentence, headings demoted to bold."""
    text = re.sub(r"^#{1,6}\s*(.+)$", r"**\1**", text.strip(), flags=re.M)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind(".\n"))
    return (cut[: end + 1] if end > limit // 2 else cut.rsplit(" ", 1)[0]) + " …"
