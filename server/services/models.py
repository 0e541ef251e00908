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
    raise ApiError(
        404,
        f"The model '{model[:100]}' does not exist. Served here: {name} (the live adapter), "
        f"{name}:base, and {name}@vN for each version in `GET /v1/models`.",
        "model_not_found",
        "model",
    )


def served_id(name: str, adapter: str | None) -> str:
    """Response metadata: engine adapter name -> model id."""
    return f"{name}@{adapter}" if adapter else f"{name}:base"


def unix_time(iso: str | None, default: int = 0) -> int:
    """A registry timestamp (ISO 8601) as unix seconds, the OpenAI `created` field."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso).timestamp()) if iso else default
    except ValueError:
        return default


def base_created(services) -> int:
    """`created` of the base model: its files' time when it is a local folder, else now."""
    import time
    from pathlib import Path

    path = services.engine.status().get("model") if services.engine is not None else None
    config = Path(path) / "config.json" if path else None
    return int(config.stat().st_mtime) if config is not None and config.is_file() else int(time.time())


def model_list(
    name: str, registry, live_adapter: str | None, context_length: int | None = None, base_created: int = 0
) -> ModelList:
    """`penwright`, `penwright:base` and every candidate/live/retired version, `parent` as vLLM does.
    `created`: a version's publication time (the live card: the live version's), the base model's otherwise."""
    versions = [v for v in (registry.list(name) if registry is not None else []) if v.status != "rejected"]
    created = {f"{name}@{adapter_name(v.version)}": unix_time(v.created_at, base_created) for v in versions}
    live_id = served_id(name, live_adapter)
    cards = [
        ModelCard(
            id=name,
            root=live_id,
            parent=f"{name}:base",
            penwright={"live": live_id},
            created=created.get(live_id, base_created),
            max_model_len=context_length,
        ),
        ModelCard(id=f"{name}:base", created=base_created, max_model_len=context_length),
    ]
    for v in versions:
        cards.append(
            ModelCard(
                id=v.model_id,
                parent=f"{name}:base",
                root=str(v.path.name),
                max_model_len=context_length,
                created=created[f"{name}@{adapter_name(v.version)}"],
                penwright={"status": v.status, "metrics": v.metrics, "created_at": v.created_at},
            )
        )
    return ModelList(data=cards)


def model_card(model_id: str, cards: ModelList) -> ModelCard:
    """One card by id (`GET /v1/models/{id}`); `penwright@live` and `penwright:live` name the live card."""
    aliases = {f"{c.id}@live": c for c in cards.data[:1]} | {f"{c.id}:live": c for c in cards.data[:1]}
    found = next((c for c in cards.data if c.id == model_id), None) or aliases.get(model_id)
    if found is None:
        raise ApiError(
            404,
            f"The model '{model_id[:100]}' does not exist. `GET /v1/models` lists the models served here.",
            "model_not_found",
            "model",
        )
    return found
