"""Writes a commented penwright.yaml from the schemas themselves, so defaults are never written twice."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from penwright.project import ProjectSettings
from penwright.server.settings import UpstreamSettings


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _emit(model: BaseModel, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            out.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            _emit(value, indent + 2, out)
        elif isinstance(value, str) and "\n" in value:
            out.append(f"{pad}{name}: {json.dumps(value)}")
        else:
            out.append(f"{pad}{name}: {_scalar(value)}")


def commented_settings(overrides: dict[str, Any] | None = None) -> str:
    """The full settings file with every default and its description; `overrides` set top-level sections."""
    settings = ProjectSettings.model_validate(overrides or {})
    out = [
        "# Penwright settings for this writing project.",
        "# Every key is shown with its default; unknown keys are rejected.",
        "# Penwright keeps all its state in .penwright/ and never writes into your manuscript or lore folders.",
        "",
    ]
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None and name == "upstream":
            example = UpstreamSettings(url="http://127.0.0.1:8000/v1", kind="vllm")
            out.append("# Proxy mode: forward generation to an existing server (vLLM, Ollama, llama.cpp).")
            out.append("# upstream:")
            lines: list[str] = []
            _emit(example, 2, lines)
            out += [f"# {line}" for line in lines if not line.lstrip().startswith("#")]
            out.append("")
            continue
        if isinstance(value, BaseModel):
            out.append(f"{name}:")
            _emit(value, 2, out)
        else:
            out.append(f"{name}: {_scalar(value)}")
        out.append("")
    return "\n".join(out)
