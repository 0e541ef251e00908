"""Prose helpers of the language server: offsets in every encoding, budgets, chapters, names."""

from __future__ import annotations

from lsprotocol import types

from penwright.server.lsp.settings import LspSettings, parse_settings
from penwright.server.lsp.text import context_at, infer_chapter, name_at, offset_at, typed_name_prefix

TEXT = '# Chapter Two\n\nMaren 😋 said "no".\nThe sea.'


def test_offsets_count_utf16_units_and_clamp_past_the_end():
    line2 = TEXT.split("\n")[2]
    # just after the emoji: 7 code points, 8 UTF-16 units, 10 UTF-8 bytes
    assert offset_at(TEXT, types.Position(2, 8), "utf-16") - TEXT.index(line2) == 7
    assert offset_at(TEXT, types.Position(2, 10), "utf-8") - TEXT.index(line2) == 7
    assert offset_at(TEXT, types.Position(2, 7), "utf-32") - TEXT.index(line2) == 7
    assert offset_at(TEXT, types.Position(99, 0)) == len(TEXT)
    assert offset_at(TEXT, types.Position(3, 500)) == len(TEXT)
    assert offset_at("", types.Position(5, 5)) == 0


def test_context_respects_the_budget_and_cuts_at_words():
    text = " ".join(f"word{i}" for i in range(2000))
    ctx = context_at(text, 5000, prefix_chars=400, suffix_chars=100)
    assert len(ctx.prefix) <= 400 and len(ctx.suffix) <= 100
    assert ctx.prefix.startswith("word") and text[:5000].endswith(ctx.prefix)
    assert text[5000:].startswith(ctx.suffix)
    assert not ctx.suffix.endswith("wor")


def test_chapter_from_heading_then_file_name():
    assert infer_chapter("file:///b/notes.md", TEXT, len(TEXT)) == 2
    assert infer_chapter("file:///b/03-the-ledger.md", "no heading", 5) == 3
    assert infer_chapter("file:///b/chapter-12.txt", "", 0) == 12
    assert infer_chapter("file:///b/ch7.md", "", 0) == 7
    assert infer_chapter("file:///b/notes.md", "plain", 3) is None
    two = "# Chapter 4\n\ntext\n\n# Chapter 5\n\nmore"
    assert infer_chapter("file:///x.md", two, two.index("text")) == 4
    assert infer_chapter("file:///x.md", two, len(two)) == 5


def test_names_and_typed_prefixes():
    names = ["Maren Vell", "Maren", "Tobias", "the Teeth"]
    line = "Then Maren Vell met Tobias near the Teeth."
    assert name_at(line, line.index("Vell") + 1, names)[0] == "Maren Vell"
    assert name_at(line, line.index("Tobias"), names)[0] == "Tobias"
    assert name_at(line, line.index("Teeth") + 2, names)[0] == "the Teeth"
    assert name_at(line, 2, names) is None
    assert typed_name_prefix("and then Maren V")[-2:] == ["Maren V", "V"]
    assert typed_name_prefix("ends with space ")[-1] != ""


def test_settings_bad_keys_are_reported_and_ignored():
    s, problems = parse_settings(
        {"penwright": {"prefixTokens": 100, "temperature": "hot", "nope": 1, "pythonPath": "/x"}}
    )
    assert s.prefix_tokens == 100 and s.temperature == LspSettings().temperature
    assert len(problems) == 2 and any("temperature" in p for p in problems) and any("nope" in p for p in problems)
    s2, problems2 = parse_settings(["not", "a", "dict"], s)
    assert s2 == s and problems2
