"""Lore over HTTP: names, lookup, search, and Continue.dev's `http` context provider.

A thin router: it only translates HTTP to `penwright.rag.index.LoreIndex`
calls, found at `app.state.lore` or, in the daemon's app, `app.state.services.lore`.
Handlers are plain `def` so FastAPI runs them in its thread pool (embedding a
query takes milliseconds of CPU; the index has its own lock).

Continue's `http` context provider (config.yaml):

    context:
      - provider: http
        params:
          url: http://127.0.0.1:8765/api/lore/context
          title: lore
          description: Characters, places and world notes

It POSTs `{query, fullInput, options, workspacePath}` and shows the returned
`[{name, description, content}]` items.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict

router = APIRouter(prefix="/api/lore", tags=["lore"])
MAX_K = 50


class ContextRequest(BaseModel):
    """What Continue's http context provider sends (unknown fields are ignored: Continue adds some)."""

    model_config = ConfigDict(extra="ignore")

    query: str = ""
    fullInput: str = ""  # noqa: N815 (Continue's field name)
    options: Any = None
    workspacePath: str | list[str] | None = None  # noqa: N815


class ContextItem(BaseModel):
    name: str
    description: str
    content: str


def _index(request: Request):
    index = getattr(request.app.state, "lore", None)
    if index is None:
        services = getattr(request.app.state, "services", None)
        index = getattr(services, "lore", None)
    if index is None:
        raise HTTPException(
            404,
            "This project has no lore index (lore.enabled is false, or there is no lore folder): "
            "add a lore/ folder with character and place notes to use these routes.",
        )
    return index


@router.get("/names")
def names(request: Request) -> dict:
    """Every entry: name, aliases, type, tags, file, chapters (for completion and hovers in editors)."""
    return {"entries": _index(request).names()}


@router.get("/lookup")
def lookup(request: Request, name: str = Query(..., min_length=1, description="an entry's name or alias")) -> dict:
    entry = _index(request).lookup(name)
    if entry is None:
        raise HTTPException(404, f"No lore entry is named or aliased '{name}'.")
    return entry


@router.get("/search")
def search(request: Request, q: str = Query(..., min_length=1), k: int = Query(5, ge=1, le=MAX_K)) -> dict:
    return {"query": q, "results": _index(request).search(q, k)}


@router.post("/context", response_model=list[ContextItem])
def context(request: Request, body: ContextRequest) -> list[ContextItem]:
    """Continue.dev `http` context provider: the query (or the whole input) -> lore sections."""
    text = (body.query or "").strip() or (body.fullInput or "").strip()
    if not text:
        return []
    index = _index(request)
    items = []
    for hit in index.search(text, 5):
        heading = f" ({hit['heading']})" if hit["heading"] and hit["heading"] != hit["name"] else ""
        items.append(
            ContextItem(
                name=f"{hit['name']}{heading}",
                description=f"{hit['type']} · lore/{hit['file']}",
                content=f"# {hit['name']}{heading}\n\n{hit['text']}",
            )
        )
    return items
