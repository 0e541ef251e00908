"""Continue.dev's autocomplete snippet header: recognise it and drop it, so the prose model sees only the prose.

Continue (core/autocomplete/templating) builds the prefix it renders into `promptTemplates.autocomplete` as
`[formatSnippets(...), prefix].join("\\n")`, before any string template sees it, so no template can keep the
header out: it has to be dropped here. `formatSnippets` writes every line of every snippet (code snippets as
`Path: <last two path parts>` then their text; git-diff snippets as they are; clipboard as `Path: Untitled.txt`)
behind the language's line-comment mark and a space, joins the snippets with newlines, and ends with the
current file's last two path parts behind the same mark. The mark is empty for Markdown, so a `.md` chapter
with no snippets gets `"\\n manuscript/chapter-03.md\\n"` before its prose; `.txt` files fall back to
TypeScript's `//`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from penwright.server.fim import STYLES

# Line-comment marks of Continue's languages (AutocompleteLanguageInfo.singleLineComment); "" is Markdown.
COMMENT_MARKS = ("", "//", "#", "--", ";", "%", "'", "<!--")
# The file path line: one or two path parts, the last with an extension (getLastNUriRelativePathParts(.., 2)).
_PATH = re.compile(r"^(?:[^/\n]+/)?[^/\n]+\.[A-Za-z0-9_-]{1,12}$")
_SNIPPET_START = ("Path: ", "diff --git ", "Index: ", "--- ", "+++ ")


def _is_path_line(line: str, mark: str) -> bool:
    head = f"{mark} "
    return line.startswith(head) and bool(_PATH.match(line[len(head) :])) and not line[len(head) :].startswith(" ")


def _header_end(lines: list[str], mark: str) -> int | None:
    """Index of the header's last line (the current file's path) for this comment mark, or None."""
    head = f"{mark} "
    if len(lines) > 2 and lines[0] == "" and _is_path_line(lines[1], mark):
        return 1  # no snippets: "\n<mark> <path>\n<prose>"
    if not lines or not lines[0].startswith(head) or not lines[0][len(head) :].startswith(_SNIPPET_START):
        return None
    end = None
    for i, line in enumerate(lines[:-1]):
        if not line.startswith(head):  # Continue writes every header line, blank ones too, as "<mark> <line>"
            break  # the header's lines all carry the mark: past them is the prose
        if _is_path_line(line, mark):
            end = i
    return end


@dataclass(frozen=True)
class Stripped:
    text: str  # the prompt or prefix without the header
    filepath: str | None  # the current file's last two path parts from the header; None without a header


def split_continue_snippets(prefix: str) -> Stripped:
    """The prefix without Continue's snippet header, and the file path the header named."""
    lines = prefix.split("\n")
    for mark in COMMENT_MARKS:
        end = _header_end(lines, mark)
        if end is not None:
            return Stripped("\n".join(lines[end + 1 :]), lines[end][len(mark) + 1 :])
    return Stripped(prefix, None)


def strip_continue_snippets(prefix: str) -> str:
    """The prefix without Continue's snippet header; unchanged when it has none."""
    return split_continue_snippets(prefix).text


def split_continue_prompt(prompt: str) -> Stripped:
    """`split_continue_snippets` on a whole autocomplete prompt: after a FIM prefix sentinel that opens it
    (Continue's templates start with one), or on the prompt itself."""
    for pre, _suf, _mid in STYLES.values():
        sentinel = pre.strip()
        if prompt.startswith(sentinel):
            rest = prompt[len(sentinel) :]
            pad = " " if pre.endswith(" ") and rest.startswith(" ") else ""
            found = split_continue_snippets(rest[len(pad) :])
            return Stripped(sentinel + pad + found.text, found.filepath)
    return split_continue_snippets(prompt)


def strip_continue_prompt(prompt: str) -> str:
    return split_continue_prompt(prompt).text


def chapter_of(found: Stripped) -> int | None:
    """The chapter Continue's request is in (Continue sends none): the last 'Chapter N' heading before the
    cursor, else the file name (`03-the-ledger.md`, `chapter-3.md`), as the language server infers it."""
    if found.filepath is None:
        return None
    from penwright.server.fim import parse_fim
    from penwright.server.lsp.text import infer_chapter

    parts = parse_fim(found.text)
    before = parts.prefix if parts is not None else found.text
    return infer_chapter(found.filepath, before, len(before))
