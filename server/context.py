"""The services container the HTTP app is built from, and how a project composes one.

`create_app(services)` only reads this; `build_services(workspace)` composes it
from the project's workspace (penwright/workspace.py), for `penwright serve` and
the bare app alike. The daemon calls `services.sync_live()` whenever its gate
promotes or a person rolls back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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
    on_request: list = field(default_factory=list)  # callables run as each completion request arrives
    generator: Any = field(init=False)  # services/generator.py: the engine or the upstream, chosen once here

    def __post_init__(self) -> None:
        from penwright.server.services.generator import generator_for

        self.generator = generator_for(self.engine, self.upstream)

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    @property
    def live_adapter(self) -> str | None:
        return self.generator.live_adapter

    def sync_live(self) -> float:
        """Make what is served match the registry's live version (hot-swap or rollback); returns engine pause (s).

        Call after `Registry.promote`/`rollback`. In proxy mode it publishes the adapter upstream instead.
        """
        live = self.registry.live(self.model_name) if self.registry is not None else None
        return self.generator.sync_live(live)

    def close(self) -> None:
        self.generator.close()


def build_services(
    workspace, start_engine: bool = True, settings: ServerSettings | None = None, events=None
) -> Services:
    """Compose a project's serving side from its workspace: engine (or upstream), registry, lore, persona.

    The engine loads the workspace's base model, the same one training resolves."""
    s = workspace.settings
    engine = upstream = None
    if s.upstream is not None:
        from penwright.server.proxy import Upstream

        upstream = Upstream(
            s.upstream, export_dir=workspace.paths.state / "exports", context_length=s.model.max_context_tokens
        )
    elif start_engine:
        engine = start_engine_for(workspace)
    services = Services(
        settings=settings or s.server,
        engine=engine,
        upstream=upstream,
        persona=s.persona,
        lore_budget_tokens=s.lore.budget_tokens,
        registry=workspace.registry,
        lore=workspace.lore_index(),
        events=events,
    )
    services.sync_live()
    return services


def start_engine_for(workspace):
    from penwright.server.engine import Engine, make_backend

    m = workspace.settings.model
    backend = make_backend(workspace.base_model(), m.backend, m.quantization, m.dtype, m.max_context_tokens)
    return Engine(backend, max_batch=workspace.settings.server.max_batch).start()


__all__ = ["Services", "build_services", "start_engine_for", "UpstreamSettings"]
