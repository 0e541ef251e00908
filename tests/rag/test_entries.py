"""Parsing lore files: front matter, sections, and bad input (no index, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from penwright.errors import InputFileError
from penwright.rag.entries import lint, parse_file, parse_text


def write(folder: Path, name: str, text: str | bytes) -> Path:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


def test_every_front_matter_field(tmp_path):
    p = write(
        tmp_path,
        "chars/ines.md",
        """---
name: Ines Marr
aliases: [Ines, the Widow Marr]
type: Character
tags: smuggler, carrow
priority: 7
always: yes
from_chapter: 4
until_chapter: 9
keys: [brandy run, /contraband\\w*/i]
---
# Ines Marr

Runs brandy past the revenue men.
""",
    )
    r = parse_file(p, tmp_path, 10**6)
    e = r.entry
    assert r.problems == []
    assert (e.file, e.name, e.type) == ("chars/ines.md", "Ines Marr", "character")
    assert e.aliases == ["Ines", "the Widow Marr"]
    assert e.tags == ["smuggler", "carrow"]
    assert (e.priority, e.always, e.from_chapter, e.until_chapter) == (7, True, 4, 9)
    assert e.keys == ["brandy run", "/contraband\\w*/i"]
    assert [s.id for s in e.sections] == ["chars/ines.md::lead"]
    assert e.sections[0].text == "Runs brandy past the revenue men."
    assert (e.holds_at(3), e.holds_at(4), e.holds_at(9), e.holds_at(10), e.holds_at(None)) == (
        False,
        True,
        True,
        False,
        True,
    )


def test_no_front_matter_name_from_heading_or_file(tmp_path):
    a = parse_file(write(tmp_path, "a.md", "# Old Hester\n\nSells bait on the quay.\n"), tmp_path, 10**6).entry
    b = parse_file(write(tmp_path, "the_salt-road.txt", "A track over the marsh.\n"), tmp_path, 10**6).entry
    assert (a.name, a.type, a.aliases) == ("Old Hester", "other", [])
    assert a.sections[0].text == "Sells bait on the quay."
    assert b.name == "The Salt Road"


def test_long_entries_split_by_heading_and_size():
    body = "# Maren\n\nLead text.\n\n## Voice\nQuiet.\n\n### Oaths\nNone.\n\n## History\n" + ("word " * 500)
    entry, problems = parse_text(body, "maren.md")
    ids = [s.id for s in entry.sections]
    assert ids[:2] == ["maren.md::lead", "maren.md::voice"]
    assert ids[2:] == ["maren.md::history", "maren.md::history-2", "maren.md::history-3"]
    assert "### Oaths" in entry.sections[1].text  # deeper headings stay inside their section
    assert all(len(s.text.split()) <= 220 for s in entry.sections)
    # ids are stable: same text, same ids
    assert [s.id for s in parse_text(body, "maren.md")[0].sections] == ids


def test_broken_front_matter_names_file_and_line(tmp_path):
    p = write(tmp_path, "bad.md", "---\nname: Bad\naliases: [unclosed\ntype: character\n---\nText.\n")
    r = parse_file(p, tmp_path, 10**6)
    assert r.entry is None
    (err,) = r.problems
    assert isinstance(err, InputFileError)
    assert "bad.md" in str(err) and "broken front matter" in str(err)
    assert err.line is not None and err.line >= 3


def test_unclosed_front_matter(tmp_path):
    r = parse_file(write(tmp_path, "open.md", "---\nname: Open\n\nNo closing line.\n"), tmp_path, 10**6)
    assert r.entry is None and "no closing '---'" in str(r.problems[0]) and "open.md:1" in str(r.problems[0])


def test_unknown_type_and_key_are_reported_but_entry_kept(tmp_path):
    r = parse_file(
        write(tmp_path, "x.md", "---\nname: X\ntype: dragon\ncolour: red\nfrom_chapter: soon\n---\nA beast.\n"),
        tmp_path,
        10**6,
    )
    assert r.entry is not None and r.entry.type == "other" and r.entry.from_chapter is None
    text = "\n".join(str(p) for p in r.problems)
    assert "unknown type 'dragon'" in text and "unknown front-matter key 'colour'" in text and "from_chapter" in text
    assert all("x.md" in str(p) for p in r.problems)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is empty"),
        (b"  \n\n ", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"caf\xe9 au lait", "not UTF-8"),
        (b"word " * 300_000, "MB"),
        (b"---\nname: Only meta\n---\n", "no text"),
    ],
)
def test_bad_files_give_clear_messages(tmp_path, content, expected):
    r = parse_file(write(tmp_path, "lore/bad.md", content), tmp_path / "lore", 1_000_000)
    assert r.entry is None
    assert expected in str(r.problems[0]) and "bad.md" in str(r.problems[0])


def test_lint_duplicates_and_shared_aliases(tmp_path):
    a = parse_file(
        write(tmp_path, "a.md", "---\nname: Tobias Ashe\naliases: [Ashe]\n---\nOne.\n"), tmp_path, 10**6
    ).entry
    b = parse_file(write(tmp_path, "b.md", "---\nname: tobias ashe\n---\nTwo.\n"), tmp_path, 10**6).entry
    c = parse_file(
        write(
            tmp_path, "c.md", "---\nname: Mrs Ashe\naliases: [Ashe]\nfrom_chapter: 5\nuntil_chapter: 2\n---\nThree.\n"
        ),
        tmp_path,
        10**6,
    ).entry
    problems = lint([a, b, c])
    assert any("b.md: name 'tobias ashe' is also claimed by a.md" in p for p in problems)
    assert any("c.md: alias 'Ashe' is also claimed by a.md" in p for p in problems)
    assert any("c.md: until_chapter 2 is before from_chapter 5" in p for p in problems)
    assert lint([a]) == []
