"""Continue.dev's autocomplete snippet header is dropped before the prose model sees the prompt.

The shapes follow Continue's core/autocomplete/templating: `prefix = [formatSnippets(helper, snippets,
workspaceDirs), prefix].join("\\n")`, where every snippet line is written as `${singleLineComment} ${line}`
(Markdown's mark is "", a .txt file falls back to TypeScript's "//"), code snippets start with
`Path: <last two path parts>`, and the block ends with the current file's last two path parts. The stop list
is getStopTokens' for a string template: ["\\n\\n", "\\r\\n\\r\\n", "/src/", "#- coding: utf-8", "```"].
"""

from __future__ import annotations

import json

import httpx
import pytest
from serving_fixtures import served_stack

from penwright.server.services.continue_prefix import strip_continue_prompt, strip_continue_snippets

CONTINUE_STOPS = ["\n\n", "\r\n\r\n", "/src/", "#- coding: utf-8", "```"]
PROSE = "Maren climbed the lighthouse stairs. At the top she"
SUFFIX = "\n\nThe lamp was cold."


def continue_prefix(prose: str, filepath: str, mark: str, snippets: list[tuple[str, str]] = ()) -> str:
    """What Continue's formatSnippets + join make of `prose`: snippets are (kind, text), kind "code" (text is
    path + content) or "diff"."""

    def commented(text: str) -> str:
        return "\n".join(f"{mark} {line}" for line in text.strip().split("\n"))

    parts = []
    for _kind, text in snippets:
        parts.append(commented(text))
    formatted = "\n".join(parts) + "\n" + commented(filepath)
    return "\n".join([formatted, prose])


LITERAL_MD_NO_SNIPPETS = "\n manuscript/chapter-03.md\n" + PROSE  # as the issue quotes it
LITERAL_MD_WITH_SNIPPETS = (
    " Path: manuscript/chapter-02.md\n"
    " Edwin sailed the grey boat past the rocks at dawn.\n"
    " \n"
    " He did not look back.\n"
    " diff --git a/manuscript/chapter-03.md b/manuscript/chapter-03.md\n"
    " --- a/manuscript/chapter-03.md\n"
    " +++ b/manuscript/chapter-03.md\n"
    " @@ -1 +1,2 @@\n"
    " +Maren climbed the lighthouse stairs.\n"
    " manuscript/chapter-03.md\n" + PROSE
)


@pytest.mark.parametrize(
    "prefix",
    [
        LITERAL_MD_NO_SNIPPETS,
        LITERAL_MD_WITH_SNIPPETS,
        continue_prefix(PROSE, "manuscript/chapter-03.md", ""),
        continue_prefix(PROSE, "chapter-03.md", ""),
        continue_prefix(PROSE, "drafts/Chapter 3.txt", "//"),
        continue_prefix(
            PROSE,
            "manuscript/chapter-03.md",
            "",
            [("code", "Path: lore/maren.md\nMaren keeps the light."), ("code", "Path: Untitled.txt\nclipboard words")],
        ),
        continue_prefix(PROSE, "drafts/ch3.txt", "//", [("diff", "diff --git a/x.txt b/x.txt\n+new line\n-old")]),
    ],
)
def test_header_is_dropped(prefix):
    assert strip_continue_snippets(prefix) == PROSE


@pytest.mark.parametrize(
    "prose",
    [
        PROSE,
        "\nA chapter that starts with a blank line.",
        " An indented first line.\nAnd more.",
        "\n notes.md\n",  # too short to be a header followed by prose? it is one: the prose after it is ""
        "// a line that looks like a comment\nbut is prose",
        "Path: a/b.md is a phrase in a story\nthat goes on.",
    ],
)
def test_prose_without_a_header_is_kept(prose):
    expected = "" if prose == "\n notes.md\n" else prose
    assert strip_continue_snippets(prose) == expected


def test_whole_fim_prompts():
    prefix = continue_prefix(PROSE, "manuscript/chapter-03.md", "")
    for pre, suf, mid in (
        ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
        ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ):
        assert strip_continue_prompt(f"{pre}{prefix}{suf}{SUFFIX}{mid}") == f"{pre}{PROSE}{suf}{SUFFIX}{mid}"
    assert strip_continue_prompt(prefix) == PROSE


@pytest.fixture(scope="module")
def stack(tiny_model_dir, tmp_path_factory):
    with served_stack(tiny_model_dir, tmp_path_factory) as stack:
        yield stack


def continue_request(server, prompt: str) -> str:
    """Continue's autocomplete request (provider: openai, string template): streamed text."""
    body = {
        "model": "penwright",
        "prompt": prompt,
        "max_tokens": 12,
        "temperature": 0,
        "stop": CONTINUE_STOPS,
        "stream": True,
        "penwright": {"lore": True},
    }
    text = []
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                text.append(json.loads(line[5:])["choices"][0]["text"])
    return "".join(text)


def test_replayed_continue_request_is_served_as_prose(stack):
    _, server = stack
    header = continue_prefix(PROSE, "manuscript/chapter-03.md", "", [("code", "Path: lore/maren.md\nMaren.")])
    with_header = continue_request(server, f"<fim_prefix>{header}<fim_suffix>{SUFFIX}<fim_middle>")
    plain = continue_request(server, f"<fim_prefix>{PROSE}<fim_suffix>{SUFFIX}<fim_middle>")
    assert with_header == plain and plain.strip()
    assert "chapter-03" not in with_header and "Path:" not in with_header


def test_header_names_the_file_and_its_chapter():
    from penwright.server.services.continue_prefix import chapter_of, split_continue_prompt

    header = continue_prefix(PROSE, "manuscript/03-the-ledger.md", "", [("code", "Path: lore/maren.md\nMaren.")])
    found = split_continue_prompt(f"<fim_prefix>{header}<fim_suffix>{SUFFIX}<fim_middle>")
    assert found.filepath == "manuscript/03-the-ledger.md" and chapter_of(found) == 3
    headed = continue_prefix("# Chapter Seven\n\n" + PROSE, "drafts/notes.txt", "//")
    assert chapter_of(split_continue_prompt(headed)) == 7  # a heading before the cursor wins over the name
    assert chapter_of(split_continue_prompt(PROSE)) is None  # not Continue: no header, no guess


def test_continue_request_gets_the_chapters_lore(tiny_model_dir, tmp_path_factory):
    """Lore with `from_chapter: 3` (Josiah Penhallow) stays out of a Continue request in chapter 1's file."""
    from serving_fixtures import LiveServer, lore_index, tiny_engine

    from penwright.server.app import create_app
    from penwright.server.context import Services
    from penwright.server.settings import ServerSettings

    services = Services(
        settings=ServerSettings(), engine=tiny_engine(tiny_model_dir), lore=lore_index(tmp_path_factory.getbasetemp())
    )
    prose = "Josiah Penhallow opened the ledger and"

    def lore_for(filepath: str | None) -> list[str]:
        prefix = continue_prefix(prose, filepath, "") if filepath else prose
        body = {
            "model": "penwright",
            "prompt": f"<fim_prefix>{prefix}<fim_suffix>{SUFFIX}<fim_middle>",
            "max_tokens": 2,
            "temperature": 0,
            "stop": CONTINUE_STOPS,
        }
        r = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["penwright"]["lore"]]

    try:
        with LiveServer(create_app(services)) as server:
            assert any("josiah" in i for i in lore_for(None))  # no chapter known: all lore may apply
            assert any("josiah" in i for i in lore_for("manuscript/03-the-ledger.md"))
            assert not any("josiah" in i for i in lore_for("manuscript/01-the-lamp.md"))
    finally:
        services.close()
