"""The lore HTTP router on a real uvicorn, a real index and the real embedding model, through the daemon's app."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from serving_fixtures import LiveServer

EXAMPLE_LORE = Path(__file__).resolve().parents[2] / "examples" / "novel" / "lore"


@pytest.fixture(scope="module")
def lore_server(tmp_path_factory):
    from penwright.rag.index import LoreIndex
    from penwright.rag.settings import LoreSettings
    from penwright.server.app import create_app
    from penwright.server.context import Services

    root = tmp_path_factory.mktemp("lore-http")
    shutil.copytree(EXAMPLE_LORE, root / "lore")
    index = LoreIndex(root / "lore", root / ".penwright" / "lore", LoreSettings())
    index.sync()
    with LiveServer(create_app(Services(lore=index))) as server:
        yield server.url
    index.close()


def test_names_lookup_search(lore_server):
    with httpx.Client(base_url=lore_server, timeout=60) as http:
        names = http.get("/api/lore/names").json()["entries"]
        maren = next(e for e in names if e["name"] == "Maren Vell")
        assert maren["aliases"] == ["Maren", "the keeper", "Keeper Vell"] and maren["type"] == "character"
        got = http.get("/api/lore/lookup", params={"name": "keeper vell"})
        assert got.status_code == 200 and "burn scar" in got.json()["text"]
        missing = http.get("/api/lore/lookup", params={"name": "Captain Nemo"})
        assert missing.status_code == 404 and "Captain Nemo" in missing.json()["error"]["message"]
        res = http.get("/api/lore/search", params={"q": "a reef of black rocks", "k": 3}).json()
        assert len(res["results"]) == 3 and res["results"][0]["name"] == "The Widow's Teeth"
        assert http.get("/api/lore/search", params={"q": "x", "k": 0}).status_code == 400


def test_continue_http_context_provider(lore_server):
    body = {
        "query": "who is the harbourmaster?",
        "fullInput": "@lore who is the harbourmaster?",
        "options": {},
        "workspacePath": "/books/novel",
    }
    with httpx.Client(base_url=lore_server, timeout=60) as http:
        items = http.post("/api/lore/context", json=body).json()
        assert isinstance(items, list) and 1 <= len(items) <= 5
        assert set(items[0]) == {"name", "description", "content"}
        assert items[0]["name"] == "Tobias Ashe" and "clay pipe" in items[0]["content"]
        assert items[0]["description"] == "character · lore/tobias-ashe.md"
        # an empty query falls back to the whole input; nothing at all gives nothing
        items = http.post("/api/lore/context", json={"query": "", "fullInput": "the survivor's eyes"}).json()
        assert items[0]["name"] == "The survivor"
        assert http.post("/api/lore/context", json={"query": " "}).json() == []


def test_no_lore_index_is_a_clear_404():
    from penwright.server.app import create_app
    from penwright.server.context import Services

    with LiveServer(create_app(Services())) as server:
        r = httpx.get(f"{server.url}/api/lore/names", timeout=30)
    assert r.status_code == 404 and "no lore index" in r.json()["error"]["message"]  # not a server error (issue 14)
