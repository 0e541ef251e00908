"""What this project is: the one place that answers it, for the CLI verbs and the daemon alike.

A `Workspace` composes a loaded `Project` (penwright.yaml + its state folder) into the things every part needs:

- the base model (one policy: `model.base` resolved once; builtin:tiny is built from the manuscript and pinned),
  and the base an adapter was trained on (recorded with every adapter, honoured by merge, export and eval);
- the manuscript's texts, cleaned exactly as curation reads them;
- the curation inputs (the lore context and the degrader `curation:` asks for) and the curation call itself,
  so `penwright curate` and the daemon's re-curation write byte-identical datasets into the same folder;
- the lore index, the adapter registry and the state paths.

Heavy parts (transformers, chromadb) are imported only when asked for.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from penwright.project import Project, StatePaths

log = logging.getLogger(__name__)

DATASET = "current"  # .penwright/datasets/current: the training set both the CLI and the daemon keep


class Workspace:
    def __init__(self, project: Project):
        self.project = project
        self.settings = project.settings
        self.root = project.root
        self._lock = threading.RLock()
        self._base: str | None = None
        self._lore = None
        self._lore_opened = False

    @property
    def paths(self) -> StatePaths:
        return self.project.paths

    @property
    def dataset_dir(self) -> Path:
        return self.paths.datasets / DATASET

    @cached_property
    def registry(self):
        from penwright.trainer.registry import Registry

        paths = self.paths.ensure()
        return Registry(paths.database, paths.adapters)

    # -- the base model ------------------------------------------------------------------------------------------
    def base_model(self) -> str:
        """`model.base` resolved (a local folder or a cached hub id), once per workspace.

        builtin:tiny is built from the manuscript on first use and pinned (trainer.models), so every verb and the
        daemon get the same model however the manuscript grew since.
        """
        with self._lock:
            if self._base is None:
                from penwright.trainer.models import resolve_model

                self._base = resolve_model(self.settings.model.base, self.paths.models, self.manuscript_texts)
            return self._base

    def adapter_base(self, recorded: str | None) -> str:
        """The base an adapter was trained on, as recorded with it (a registry version's `base_model`, or a PEFT
        folder's `base_model_name_or_path`); the project's base when it recorded none or its base is gone."""
        recorded = recorded or ""
        if recorded and (Path(recorded) / "config.json").is_file():
            return recorded
        if recorded and not recorded.startswith((".", "/", "~")) and recorded == self.settings.model.base:
            return recorded  # a hub id, as configured
        return self.base_model()

    def tokenizer(self):
        """The base model's tokenizer (what curation counts tokens with and training encodes with)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.base_model())

    # -- the manuscript ------------------------------------------------------------------------------------------
    def manuscript_texts(self) -> list[str]:
        """The manuscript's prose, cleaned exactly as curation reads it (builtin:tiny's tokenizer is trained on it)."""
        from penwright.trainer.curate.cache import FileCache
        from penwright.trainer.curate.pipeline import read_sources

        files, _ = self.manuscript_files()
        reads, _ = read_sources(files, FileCache(self.dataset_dir), lambda *a: None)
        return [r.cleaned.text() for r in reads]

    def manuscript_files(self):
        """(files, problems): the manuscript files curation reads, under the include/exclude globs and the ignore
        file (gitignore rules; the watcher uses the same matcher)."""
        from penwright.trainer.curate.sources import discover

        m = self.settings.manuscript
        return discover(self.project.manuscript_dirs, m.include, m.exclude, self.project.ignore_file, self.root)

    # -- curation ------------------------------------------------------------------------------------------------
    def curate(self, tokenizer: Any = None, progress: Callable | None = None, dry_run: bool = False):
        """Curate the manuscript into `.penwright/datasets/current/` with every input `curation:` asks for.

        `tokenizer` defaults to the base model's; a `trainer.curate.ModelTokenizer` works too (builtin:tiny
        dry runs). Unchanged files come from curation's per-file cache.
        """
        from penwright.trainer.curate import curate

        s = self.settings
        if not dry_run:
            self.paths.ensure()
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer()
        return curate(
            self.project.manuscript_dirs,
            s.manuscript.include,
            s.manuscript.exclude,
            self.project.ignore_file,
            s.curation,
            tokenizer,
            self.dataset_dir,
            lore_context=None if dry_run else self.lore_context(),
            progress=progress,
            root=self.root,
            context_limit=s.model.max_context_tokens,
            dry_run=dry_run,
            degrader=self.degrader(),
        )

    def lore_context(self):
        """`callable(chunk_text) -> lore text` from the lore index when `curation.pair_types` asks for lore pairs
        (the rows wrap it as the server does, through the shared prompt format); else None."""
        if "lore" not in self.settings.curation.pair_types:
            return None
        index = self.lore_index()
        if index is None:
            return None

        def lore_context(text: str) -> str:
            selection = index.select(text[-2000:])
            return selection.text if selection is not None else ""

        digest = hashlib.sha256()
        for path in sorted(p for p in self.project.lore_dir.rglob("*") if p.is_file()):
            digest.update(path.as_posix().encode() + path.read_bytes())
        lore_context.fingerprint = digest.hexdigest()[:16]  # type: ignore[attr-defined]  # lore edits redo lore pairs
        return lore_context

    def degrader(self):
        """The degrader `curation.degrade_with` asks for: offline rules, the base model, or the upstream endpoint."""
        from penwright.errors import SettingsError
        from penwright.trainer.curate.degrade import ChatDegrader, RuleDegrader, model_complete, upstream_complete

        how = self.settings.curation.degrade_with
        if how == "upstream":
            up = self.settings.upstream
            if up is None or not up.model:
                raise SettingsError(
                    ["curation.degrade_with is 'upstream' but no upstream (url and model) is set"],
                    self.root / "penwright.yaml",
                    "Add an upstream: section with url and model, or use degrade_with: rules.",
                )
            return ChatDegrader(
                upstream_complete(up.url, up.model, up.api_key, up.timeout_seconds), name=f"upstream:{up.model}"
            )
        if how == "model":
            if self.settings.model.base.startswith("builtin:"):
                log.warning("degrade_with: model needs a real base model; builtin:tiny writes word salad. Using rules.")
                return RuleDegrader()
            return ChatDegrader(model_complete(self.base_model), name=f"model:{self.settings.model.base}")
        return RuleDegrader()

    # -- lore ----------------------------------------------------------------------------------------------------
    def open_lore_index(self):
        """The lore index if it was opened already (never opens it: for counts and status)."""
        return self._lore

    def lore_index(self):
        """The project's lore index, opened and synced once; None when lore is off, its folder is missing, or the
        lore component cannot load (lore never stops curation or serving; the reason is logged)."""
        with self._lock:
            if self._lore_opened:
                return self._lore
            self._lore_opened = True
            if not self.settings.lore.enabled or not self.project.lore_dir.is_dir():
                return None
            try:
                from penwright.rag.index import LoreIndex

                index = LoreIndex(self.project.lore_dir, self.paths.lore_index, self.settings.lore)
                index.sync()
                self._lore = index
            except ImportError:
                log.info("lore component not installed; going on without lore")
            except Exception as err:  # lore must never stop serving
                log.warning("lore unavailable, going on without it: %s", err)
            return self._lore


def open_workspace(path: Path | str | None = None) -> Workspace:
    """The workspace of the project at `path` (its folder, any folder inside it, or its penwright.yaml)."""
    from penwright.project import load_project

    return Workspace(load_project(path))
