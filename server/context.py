"""The services container the HTTP app is built from, and how a project composes one.

`create_app(services)` only reads this; the daemon (`penwright serve`) builds it
with `build_services(project)`, adds its own pieces (events, jobs) and calls
`services.sync_live()` whenever the registry promotes or rolls back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penwright.server.settings import PersonaSettings, ServerSettings, UpstreamSettings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: ServerSettings = field(default_factory=ServerSettings)
    engine: Any = None  # penwright.server.engine.Engine (None in proxy mode)
    registry: Any = None  # penwright.trainer.registry.Registry
    lore: Any = None  # penwright.rag.index.LoreIndex, None = no lore injection
    lore_budget_tokens: int | None = None
    persona: PersonaSettings = field(default_factory=PersonaSettings)
    upstream: Any = None  # penwright.server.proxy.Upstream (proxy mode)
    events: Any = None  # penwright.server.events.EventBus
    extra: dict = field(default_factory=dict)  # room for the daemon's own objects (jobs, watcher...)
    on_request: list = field(default_factory=list)  # callables run as each completion request arrives

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    @property
    def live_adapter(self) -> str | None:
        if self.engine is not None:
            return self.engine.live
        return self.upstream.live_adapter if self.upstream is not None else None

    def sync_live(self) -> float:
        """Make what is served match the registry's live version (hot-swap or rollback); returns engine pause (s).

        Call after `Registry.promote`/`rollback`. In proxy mode it publishes the adapter upstream instead.
        """
        from penwright.server.services.models import adapter_name

        live = self.registry.live(self.model_name) if self.registry is not None else None
        if self.upstream is not None:
            if live is not None:
                self.upstream.publish(live)
            return 0.0
        if self.engine is None:
            return 0.0
        wanted = adapter_name(live.version) if live is not None else None
        if wanted == self.engine.live:
            return 0.0
        return self.engine.set_live(wanted, live.path if live is not None else None)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        if self.upstream is not None:
            self.upstream.close()


def manuscript_texts(project) -> list[str]:
    """The manuscript's prose, cleaned exactly as curation reads it (builtin:tiny's tokenizer is trained on it),
    so `serve`, `train`, `eval`, `merge` and the daemon's curation all build the same builtin:tiny."""
    from penwright.trainer.curate.cache import FileCache
    from penwright.trainer.curate.pipeline import read_sources
    from penwright.trainer.curate.sources import discover

    m = project.settings.manuscript
    files, _ = discover(project.manuscript_dirs, m.include, m.exclude, project.ignore_file, project.root)
    reads, _ = read_sources(files, FileCache(project.paths.datasets / "current"), lambda *a: None)
    return [r.cleaned.text() for r in reads]


def build_services(project, start_engine: bool = True, settings: ServerSettings | None = None) -> Services:
    """Compose a project's serving side: engine (or upstream), registry, lore, persona."""
    from penwright.trainer.registry import Registry

    s = project.settings
    paths = project.paths.ensure()
    services = Services(
        settings=settings or s.server,
        persona=s.persona,
        lore_budget_tokens=s.lore.budget_tokens,
        registry=Registry(paths.database, paths.adapters),
    )
    services.lore = _open_lore(project)
    if s.upstream is not None:
        from penwright.server.proxy import Upstream

        services.upstream = Upstream(
            s.upstream, export_dir=paths.state / "exports", context_length=s.model.max_context_tokens
        )
    elif start_engine:
        services.engine = start_engine_for(project)
    services.sync_live()
    return services


def start_engine_for(project):
    from penwright.server.engine import Engine, make_backend
    from penwright.trainer.models import resolve_model

    m = project.settings.model
    path = resolve_model(m.base, project.paths.models, lambda: manuscript_texts(project))
    backend = make_backend(path, m.backend, m.quantization, m.dtype, m.max_context_tokens)
    return Engine(backend, max_batch=project.settings.server.max_batch).start()


def _open_lore(project):
    """The project's lore index, or None (lore disabled, no lore folder, or the lore component missing)."""
    if not project.settings.lore.enabled or not Path(project.lore_dir).is_dir():
        return None
    try:
        from penwright.rag.index import LoreIndex
    except ImportError:
        log.info("lore component not installed; serving without lore")
        return None
    try:
        index = LoreIndex(project.lore_dir, project.paths.lore_index, project.settings.lore)
        index.sync()
        return index
    except Exception as err:  # lore must never stop serving
        log.warning("lore unavailable, serving without it: %s", err)
        return None


__all__ = ["Services", "build_services", "start_engine_for", "manuscript_texts", "UpstreamSettings"]
