"""Served model ids -> what serves them: `penwright` (live adapter), `penwright@v7`, `penwright:base`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from penwright.server.engine import BASE, LIVE
from penwright.server.protocol import ModelCard, ModelList
from penwright.server.services.errors import ApiError

_VERSION = re.compile(r"^v?(\d{1,9})$")


@dataclass(frozen=True)
class Target:
    adapter: str  # engine adapter: LIVE, BASE or "v7"
    version: object = None  # the registry's AdapterVersion for "@vN" ids


def adapter_name(version: int) -> str:
    """Engine name of registry version N."""
    return f"v{version}"


def resolve(model: str | None, name: str, registry) -> Target:
    """Parse a request's `model`. Unknown or malformed ids are a 404 naming the ids that exist."""
    model = (model or name).strip()
    if model in (name, f"{name}:live", f"{name}@live"):
        return Target(LIVE)
    if model == f"{name}:base":
        return Target(BASE)
    if model.startswith(f"{name}@"):
        m = _VERSION.match(model[len(name) + 1 :])
        if m and registry is not None:
            from penwright.errors import RegistryError

            try:
                version = registry.get(int(m.group(1)))
            except RegistryError:
                version = None
            if version is not None and version.name == name and version.status != "rejected":
                return Target(adapter_name(version.version), version)
    raise ApiError(404, f"The model '{model[:100]}' does not exist. Served here: {name} (the live adapter), "
                   f"{name}:base, and {name}@vN for each version in `GET /v1/models`.", "model_not_found", "model")


def served_id(name: str, adapter: str | None) -> str:
    """Response metadata: engine adapter name -> model id."""
    return f"{name}@{adapter}" if adapter else f"{name}:base"


def model_list(name: str, registry, live_adapter: str | None) -> ModelList:
    """`penwright`, `penwright:base` and every candidate/live/retired version, `parent` as vLLM does."""
    cards = [ModelCard(id=name, root=served_id(name, live_adapter), parent=f"{name}:base",
                       penwright={"live": served_id(name, live_adapter)}),
             ModelCard(id=f"{name}:base")]
    for v in registry.list(name) if registry is not None else []:
        if v.status == "rejected":
            continue
        cards.append(ModelCard(id=v.model_id, parent=f"{name}:base", root=str(v.path.name),
                               penwright={"status": v.status, "metrics": v.metrics, "created_at": v.created_at}))
    return ModelList(data=cards)
