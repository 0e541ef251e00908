"""Training presets: `configs/<name>.yaml` (or any YAML path) validated against TrainingSettings.

A preset sets some fields; the rest keep the schema's defaults (defaults live only
in `trainer/settings.py`). Overrides from penwright.yaml or the CLI are applied on top.
"""

from __future__ import annotations

from pathlib import Path

from penwright.errors import SettingsError
from penwright.trainer.settings import TrainingChoice, TrainingSettings
from penwright.yamlio import describe_errors, load_yaml

PRESET_NAMES = ("fast", "regular", "dora", "kl", "dora_kl", "persona_14b_4bit")


def presets_dir() -> Path:
    """configs/ beside the package folders (editable install and source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "presets"):
        if candidate.is_dir():
            return candidate
    raise SettingsError([f"no presets folder found near {here}"], hint="Reinstall Penwright from its source checkout.")


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_path(preset: str, base_dir: Path | None = None) -> Path:
    """A preset name from configs/, or a .yaml/.yml path; with `base_dir` (the project), only a path inside it.

    Nothing outside the project is opened and errors never say whether such a path exists, so a request
    naming a preset cannot read (or probe for) the author's other files."""
    if preset.endswith((".yaml", ".yml")) or "/" in preset or "\\" in preset:
        return _preset_file(preset, base_dir)
    path = presets_dir() / f"{preset}.yaml"
    if not preset.replace("_", "").replace("-", "").isalnum() or not path.is_file():
        raise SettingsError(
            [f"unknown training preset '{preset}'"],
            hint=f"Use one of: {', '.join(list_presets())}, or the path of a .yaml file inside the project.",
        )
    return path


def _preset_file(preset: str, base_dir: Path | None) -> Path:
    path = Path(preset).expanduser()
    if base_dir is None:
        return path
    root = Path(base_dir).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root) or resolved.suffix.lower() not in (".yaml", ".yml"):
        raise SettingsError(
            [f"training preset '{preset}' is not a .yaml file inside the project"],
            hint=f"Use a preset name ({', '.join(list_presets())}) or copy the YAML file into the project folder.",
        )
    return resolved


def load_training_settings(
    choice: TrainingChoice | str, overrides: dict | None = None, base_dir: Path | None = None
) -> TrainingSettings:
    """Preset + overrides -> validated TrainingSettings; errors name the file and line of each bad key."""
    if isinstance(choice, str):
        choice = TrainingChoice(preset=choice)
    path = preset_path(choice.preset, base_dir)
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(["a preset must be a mapping of training fields"], path)
    merged = {**data, **choice.overrides, **(overrides or {})}
    from pydantic import ValidationError

    try:
        return TrainingSettings.model_validate(merged)
    except ValidationError as err:
        over = set(choice.overrides) | set(overrides or {})
        problems = [
            p if not any(f"'{k}'" in p or p.startswith(f"{k}:") for k in over) else p + " (from overrides)"
            for p in describe_errors(err, lines)
        ]
        raise SettingsError(problems, path) from None
