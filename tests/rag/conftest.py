"""Lore fixtures: one real offline embedding model per session, a private copy of the example lore."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLE_LORE = Path(__file__).resolve().parents[2] / "examples" / "novel" / "lore"


@pytest.fixture(scope="session")
def embedder():
    """The real builtin all-MiniLM-L6-v2, loaded once for the whole session (loading costs seconds)."""
    from penwright.rag.embedding import PenwrightEmbeddings

    emb = PenwrightEmbeddings()
    emb.encode(["warm up"])
    return emb


@pytest.fixture(scope="session")
def count_tokens(gutenberg_31m):
    """Token counter of a real Qwen2 tokenizer (the shared 31M model's)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gutenberg_31m))
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)


@pytest.fixture(scope="session")
def example_built(tmp_path_factory, embedder) -> Path:
    """The example lore indexed once per session: `lore/` and its index in `index/`."""
    from penwright.rag.index import LoreIndex
    from penwright.rag.settings import LoreSettings

    root = tmp_path_factory.mktemp("lore-built")
    shutil.copytree(EXAMPLE_LORE, root / "lore")
    idx = LoreIndex(root / "lore", root / "index", LoreSettings(), embedder=embedder)
    idx.sync()
    idx.close()
    return root


@pytest.fixture()
def lore_dir(tmp_path: Path, example_built: Path) -> Path:
    """A private copy of the example lore, with a copy of its built index at tmp_path/state/lore."""
    dest = tmp_path / "lore"
    shutil.copytree(example_built / "lore", dest)
    shutil.copytree(example_built / "index", tmp_path / "state" / "lore")
    return dest


@pytest.fixture()
def make_index(tmp_path: Path, embedder):
    """Factory: a LoreIndex on a temp index folder with the shared embedder; closed at teardown."""
    from penwright.rag.index import LoreIndex
    from penwright.rag.settings import LoreSettings

    made = []

    def make(lore: Path, index_dir: Path | None = None, **settings):
        idx = LoreIndex(lore, index_dir or tmp_path / "state" / "lore", LoreSettings(**settings), embedder=embedder)
        made.append(idx)
        return idx

    yield make
    for idx in made:
        idx.close()
