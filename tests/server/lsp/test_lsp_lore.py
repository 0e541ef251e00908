"""Lore in the editor: name completion, hover and definition from the daemon's lore index."""

from __future__ import annotations

from lsp_support import lsp_session, open_doc
from lsprotocol import types

TEXT = "Maren Vell watched the Widow's Teeth.\nThen Tobias came up the stair, and Mar"


async def test_name_completion_offers_names_and_aliases_in_markdown_and_plain_text(daemon):
    async with lsp_session(daemon.root) as client:
        for name, language in (("notes.md", "markdown"), ("notes.txt", "plaintext")):
            uri = open_doc(client, daemon.root / "manuscript" / name, TEXT, language)
            result = await client.text_document_completion_async(
                types.CompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(1, len("Then Tobias came up the stair, and Mar")),
                )
            )
            labels = {i.label: i for i in result.items}
            assert {"Maren Vell", "Maren"} <= set(labels), sorted(labels)
            assert "Tobias Ashe" not in labels  # does not start with 'Mar'
            main = labels["Maren Vell"]
            assert main.detail == "character" and main.kind == types.CompletionItemKind.Class
            assert labels["Maren"].detail == "character: alias of Maren Vell"
            edit = main.text_edit
            assert edit.new_text == "Maren Vell" and edit.range.start.character == len(
                "Then Tobias came up the stair, and "
            )
            assert edit.range.end.character == len("Then Tobias came up the stair, and Mar")


async def test_hover_shows_the_trimmed_entry_with_a_link_and_definition_opens_the_file(daemon):
    async with lsp_session(daemon.root) as client:
        uri = open_doc(client, daemon.root / "manuscript" / "scratch.md", TEXT)
        on_teeth = types.Position(0, TEXT.index("Teeth") + 2)
        hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), on_teeth))
        value = hover.contents.value
        assert value.startswith("**The Widow's Teeth** (location)")
        assert "reef of black rocks" in value
        lore_file = (daemon.root / "lore" / "widows-teeth.md").resolve()
        assert f"({lore_file.as_uri()})" in value and "[lore/widows-teeth.md]" in value
        assert hover.range.start.character == TEXT.index(
            "the Widow's Teeth"
        ) or hover.range.start.character == TEXT.index("Widow's Teeth")

        on_tobias = types.Position(1, len("Then Tob"))
        found = await client.text_document_definition_async(
            types.DefinitionParams(types.TextDocumentIdentifier(uri), on_tobias)
        )
        assert [loc.uri for loc in found] == [(daemon.root / "lore" / "tobias-ashe.md").resolve().as_uri()]

        nothing = await client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(0, 14))
        )
        assert nothing is None  # 'watched' is nobody
        none_def = await client.text_document_definition_async(
            types.DefinitionParams(types.TextDocumentIdentifier(uri), types.Position(0, 14))
        )
        assert not none_def


async def test_positions_in_utf8_when_the_client_negotiates_it(daemon):
    line = "Café 😋 — Maren Vell"
    async with lsp_session(daemon.root, encoding="utf-8") as client:
        uri = open_doc(client, daemon.root / "manuscript" / "utf8.md", line)
        at_vell = len(line[: line.index("Vell") + 1].encode("utf-8"))
        hover = await client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(0, at_vell))
        )
        assert hover is not None and hover.contents.value.startswith("**Maren Vell**")
        assert hover.range.start.character == len(line[: line.index("Maren")].encode("utf-8"))
        assert hover.range.end.character == len(line.encode("utf-8"))
