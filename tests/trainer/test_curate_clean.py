"""Cleaning: synthetic edge cases and the real Austen/Doyle texts."""

from __future__ import annotations

import re

import pytest

from penwright.trainer.curate.clean import clean
from penwright.trainer.curate.sources import SkipFile, SourceFile, read_source

MESSY_MD = """---
title: Draft
tags: [novel]
---

Copyright © 2024 A. Writer. All rights reserved.

# Chapter One: The Lamp

<!-- remember to fix the timeline -->
TODO: check the tide tables
Maren climbed the *hundred* and **twelve** steps at dusk,
with the oil can knocking against her knee.[^1] She had [[Maren backstory]] kept
the light for eleven winters.

She looked at the <em>sea</em> &amp; the [sky](https://example.com) and thought of
nothing at all. [TODO: better image]

- outline: she finds the shoe
- outline: Tobias arrives

* * *

The morning was well-
known to her, grey--and
cold.

[^1]: The can was brass.

## Chapter Two

A new chapter began here, with a sentence long enough to be a real paragraph of prose.
"""


def test_markdown_manuscript_is_cleaned_to_prose():
    result = clean(MESSY_MD, markdown=True)
    text = result.text()
    for gone in (
        "title: Draft",
        "Copyright",
        "Chapter One",
        "remember to fix",
        "TODO",
        "tide tables",
        "Maren backstory",
        "better image",
        "[^1]",
        "brass",
        "outline",
        "<em>",
        "*",
        "**",
        "https://",
        "Chapter Two",
        "#",
    ):
        assert gone not in text, gone
    paras = result.paragraphs
    assert paras[0] == (
        "Maren climbed the hundred and twelve steps at dusk, with the oil can knocking against her knee. "
        "She had kept the light for eleven winters."
    )
    assert paras[1] == "She looked at the sea & the sky and thought of nothing at all."
    assert "The morning was well-known to her, grey--and cold." in paras
    # the scene break and both chapter headings are hard boundaries
    assert len(result.scenes) == 3
    assert result.scenes[1] == ["The morning was well-known to her, grey--and cold."]
    assert result.removed["headings"] == 2 and result.removed["notes"] >= 3 and result.removed["footnotes"] >= 2


def test_hard_wrapped_text_is_unwrapped_and_scene_breaks_split():
    text = "CHAPTER I\n\nIt was a dark\nand stormy night;\nthe rain fell.\n\n    * * *\n\nMorning came\nslowly.\n"
    result = clean(text, markdown=False)
    assert result.scenes == [["It was a dark and stormy night; the rain fell."], ["Morning came slowly."]]


def test_indented_paragraphs_without_blank_lines():
    lines = ["  First paragraph starts here", "and goes on.", "  Second paragraph starts", "and ends."] * 3
    result = clean("\n".join(lines), markdown=False)
    assert result.paragraphs[:2] == ["First paragraph starts here and goes on.", "Second paragraph starts and ends."]


def test_gutenberg_markers_front_and_end_matter():
    body = "\n\n".join(
        f"Paragraph {i} of the story, told at some length so that it counts as prose." for i in range(40)
    )
    text = (
        "The Project Gutenberg eBook of Something\n\n*** START OF THE PROJECT GUTENBERG EBOOK SOMETHING ***\n\n"
        "SOMETHING\n\nBy An Author\n\nContents\n\nI. The Beginning\nII. The Middle\nIII. The End\n\n"
        f"CHAPTER I. THE BEGINNING\n\n{body}\n\nTHE END\n\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK SOMETHING ***\n\nLicence text that must go.\n"
    )
    result = clean(text, markdown=False)
    assert result.paragraphs[0].startswith("Paragraph 0 of the story")
    assert result.paragraphs[-1].startswith("Paragraph 39 of the story")
    assert len(result.paragraphs) == 40
    assert "Licence" not in result.text() and "Contents" not in result.text()


@pytest.mark.parametrize(
    "name,first",
    [
        (
            "austen/emma.txt",
            "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition",
        ),
        ("austen/pride_and_prejudice.txt", "It is a truth universally acknowledged, that a single man in possession"),
        ("austen/northanger_abbey.txt", "No one who had ever seen Catherine Morland in her infancy"),
        ("doyle/the_hound_of_the_baskervilles.txt", "Mr. Sherlock Holmes, who was usually very late in the mornings"),
    ],
)
def test_real_novels_start_at_the_story(corpora, name, first):
    result = clean((corpora / name).read_text(encoding="utf-8"), markdown=False)
    assert result.paragraphs[0].startswith(first)
    text = result.text()
    assert not re.search(r"^(CHAPTER|Chapter|VOLUME)\b", text, re.M), "chapter headings must go"
    assert "FINIS" not in text and "THE END" not in text and "ADVERTISEMENT BY THE AUTHORESS" not in text
    assert "Vide a letter" not in text  # Northanger's footnote
    # unwrapped: no paragraph keeps the ~70-column hard wrap
    assert all("\n" not in p for p in result.paragraphs)
    assert max(len(p) for p in result.paragraphs) > 1000
    # chapters are boundaries: at least one scene per chapter
    chapters = len(re.findall(r"^(?:CHAPTER|Chapter) ", (corpora / name).read_text(encoding="utf-8"), re.M))
    assert len(result.scenes) >= chapters


def test_pride_and_prejudice_scene_breaks(corpora):
    raw = (corpora / "austen/pride_and_prejudice.txt").read_text(encoding="utf-8")
    result = clean(raw, markdown=False)
    # the six "* * * * *" breaks inside chapters add scenes beyond the 61 chapters
    assert len(result.scenes) >= 61 + 6
    assert not any("* * *" in p for p in result.paragraphs)
    words = len(raw.split())
    assert 0.97 * words < result.words <= words  # only headings and front matter went


def test_docx_reader(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Chapter One", level=1)
    document.add_paragraph("The first paragraph of the chapter, with enough words to be prose.")
    document.add_paragraph("TODO: cut this")
    document.add_paragraph("The second paragraph follows it, and the story goes on.")
    path = tmp_path / "draft.docx"
    document.save(path)
    _, text = read_source(SourceFile(path, "draft.docx"))
    result = clean(text, markdown=True)
    assert result.paragraphs == [
        "The first paragraph of the chapter, with enough words to be prose.",
        "The second paragraph follows it, and the story goes on.",
    ]


def test_broken_docx_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "broken.docx"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(SkipFile) as err:
        read_source(SourceFile(path, "broken.docx"))
    assert "broken.docx" in str(err.value) and "Word document" in str(err.value)
