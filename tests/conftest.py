"""Shared fixtures. Nothing here downloads: models are built in the test or read from ../shared."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb

from pathlib import Path

import pytest
from pwtest import copy_example, example_texts, tree_digest  # noqa: F401  (tree_digest re-exported for tests)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "novel"
SHARED = REPO.parent / "shared"
CORPORA = SHARED / "corpora"
GUTENBERG_31M = SHARED / "models" / "gutenberg-qwen2-31m"


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.fail(f"{CORPORA} is missing: tests read the shared corpora next to the repository")
    return CORPORA


@pytest.fixture(scope="session")
def gutenberg_31m() -> Path:
    if not (GUTENBERG_31M / "config.json").is_file():
        pytest.fail(f"{GUTENBERG_31M} is missing")
    return GUTENBERG_31M


@pytest.fixture()
def example_project(tmp_path: Path) -> Path:
    """A private copy of examples/novel (without any state from earlier runs)."""
    return copy_example(tmp_path / "novel")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """builtin:tiny built once per session from the example manuscript."""
    from penwright.trainer.tiny import build_tiny_model

    return build_tiny_model(example_texts(), tmp_path_factory.mktemp("models"))
