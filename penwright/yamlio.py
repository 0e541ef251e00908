"""YAML in, validated pydantic models out, with file and line in every error.

`yaml.safe_load` loses line numbers and reads `1e-5` as a string; this loader
keeps a line for every key (so "unknown key 'lernig_rate' at penwright.yaml:12"
is possible) and resolves scientific notation as floats, as mlx-lm does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from penwright.errors import SettingsError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Any, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-5 (no dot) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class _DuplicateKey(Exception):
    pass


def _construct(node: yaml.Node, loader: _Loader, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:  # YAML readers differ (last wins here): say so rather than pick one silently
                dotted = ".".join(str(p) for p in loc + (key,))
                raise _DuplicateKey(
                    f"line {key_node.start_mark.line + 1}: '{dotted}' is set twice (first at line "
                    f"{lines[loc + (key,)]}); keep one"
                )
            lines[loc + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, loader, loc + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loader, loc + (i,), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text; returns (data, {key path: line})."""
    lines: dict[Loc, int] = {}
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = _construct(node, loader, (), lines) if node is not None else None
        finally:
            loader.dispose()
    except _DuplicateKey as err:
        raise SettingsError([str(err)], source) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SettingsError([f"malformed YAML{where}: {problem}"], source) from None
    return data, lines


def load_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(["file not found"], path) from None
    except UnicodeDecodeError as err:
        raise SettingsError([f"not UTF-8 text (byte {err.start})"], path) from None
    return parse_yaml(text, str(path))


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def describe_errors(err: ValidationError, lines: dict[Loc, int], prefix: Loc = ()) -> list[str]:
    """One readable line per pydantic error, every error at once, with its line."""
    problems = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_for(loc, lines)
        at = f"line {line}: " if line else ""
        if e["type"] == "extra_forbidden":
            problems.append(f"{at}unknown key '{dotted}' (check the spelling; `penwright init` lists every key)")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) and got is not None else ""
            problems.append(f"{at}{dotted}: {e['msg']}{shown}")
    return problems


def validate(model: type[M], data: Any, lines: dict[Loc, int] | None = None, source: Any = None) -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise SettingsError(describe_errors(err, lines or {}), source) from None
