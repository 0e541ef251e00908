"""A writing project: its `penwright.yaml`, composed from each component's schema, and its state folder.

All state lives in `<project>/.penwright/`. Penwright never writes inside the
manuscript or lore folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from penwright.errors import ProjectNotFoundError, SettingsError
from penwright.rag.settings import LoreSettings
from penwright.server.settings import (
    PersonaSettings,
    RetrainPolicy,
    ServerSettings,
    UpstreamSettings,
    WatchSettings,
)
from penwright.trainer.settings import CurationSettings, ModelSettings, TrainingChoice
from penwright.yamlio import load_yaml, validate

SETTINGS_FILE = "penwright.yaml"
STATE_DIR = ".penwright"
IGNORE_FILE = ".penwrightignore"


class ManuscriptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    folders: list[str] = Field(
        default_factory=lambda: ["manuscript"], description="Manuscript folders, relative to the project."
    )
    include: list[str] = Field(default_factory=lambda: ["**/*.md", "**/*.txt", "**/*.docx"])
    exclude: list[str] = Field(default_factory=list, description="Globs to skip (also see .penwrightignore).")

    @field_validator("folders")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one manuscript folder")
        return v


class ProjectSettings(BaseModel):
    """The whole of penwright.yaml. Each section is its component's own schema."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    title: str = "Untitled"
    manuscript: ManuscriptSettings = Field(default_factory=ManuscriptSettings)
    lore: LoreSettings = Field(default_factory=LoreSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    curation: CurationSettings = Field(default_factory=CurationSettings)
    training: TrainingChoice = Field(default_factory=TrainingChoice)
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    persona: PersonaSettings = Field(default_factory=PersonaSettings)
    upstream: UpstreamSettings | None = None


@dataclass(frozen=True)
class StatePaths:
    """Where everything Penwright writes lives: under `<project>/.penwright/`."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def datasets(self) -> Path:
        return self.state / "datasets"

    @property
    def runs(self) -> Path:
        return self.state / "runs"

    @property
    def adapters(self) -> Path:
        return self.state / "adapters"

    @property
    def lore_index(self) -> Path:
        return self.state / "lore"

    @property
    def models(self) -> Path:
        return self.state / "models"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def reports(self) -> Path:
        return self.state / "reports"

    @property
    def database(self) -> Path:
        return self.state / "penwright.db"

    @property
    def feedback(self) -> Path:
        return self.state / "feedback.jsonl"

    def ensure(self) -> StatePaths:
        for p in (self.datasets, self.runs, self.adapters, self.lore_index, self.models, self.logs, self.reports):
            p.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class Project:
    root: Path
    settings: ProjectSettings

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.root)

    @property
    def manuscript_dirs(self) -> list[Path]:
        return [(self.root / f).resolve() for f in self.settings.manuscript.folders]

    @property
    def lore_dir(self) -> Path:
        return (self.root / self.settings.lore.folder).resolve()

    @property
    def ignore_file(self) -> Path:
        return self.root / IGNORE_FILE

    def protected_dirs(self) -> list[Path]:
        """Folders Penwright must never write into."""
        return [*self.manuscript_dirs, self.lore_dir]


def find_project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder
    raise ProjectNotFoundError(here)


def load_project(path: Path | str | None = None) -> Project:
    """Load a project from its folder (or any folder inside it) or its penwright.yaml."""
    p = Path(path) if path else None
    if p is not None and p.is_file():
        root, settings_file = p.resolve().parent, p.resolve()
    else:
        root = find_project_root(p)
        settings_file = root / SETTINGS_FILE
    data, lines = load_yaml(settings_file)
    if data is not None and not isinstance(data, dict):
        raise SettingsError(["the file must be a mapping of sections (manuscript:, model:, ...)"], settings_file)
    settings = validate(ProjectSettings, data, lines, settings_file)
    _check_state_outside_protected(root, settings, settings_file)
    return Project(root=root, settings=settings)


def _check_state_outside_protected(root: Path, settings: ProjectSettings, source: Path) -> None:
    state = (root / STATE_DIR).resolve()
    for folder in [*settings.manuscript.folders, settings.lore.folder]:
        target = (root / folder).resolve()
        if state == target or state.is_relative_to(target):
            raise SettingsError(
                [f"'{folder}' contains the state folder {STATE_DIR}/; Penwright would write inside your text"],
                source,
                "Keep the manuscript and lore in their own subfolders (e.g. manuscript/ and lore/).",
            )


def startup_problems(project: Project) -> list[str]:
    """What penwright.yaml names that is not there, so `serve` (and `doctor`) say it now instead of at the first job."""
    from penwright.trainer.presets import load_training_settings

    s = project.settings
    problems = [
        f"manuscript.folders: {d} does not exist (create it, or fix the folder name)"
        for d in project.manuscript_dirs
        if not d.is_dir()
    ]
    if s.lore.enabled and not project.lore_dir.is_dir():
        problems.append(
            f"lore.folder: {project.lore_dir} does not exist (create it, even empty, or set lore.enabled: false)"
        )
    try:
        load_training_settings(s.training, None, project.root)
    except SettingsError as err:
        problems += [f"training (preset '{s.training.preset}'): {p}" for p in err.problems]
    return problems


def check_startup(project: Project) -> None:
    problems = startup_problems(project)
    if problems:
        raise SettingsError(
            problems,
            project.root / SETTINGS_FILE,
            "Fix these in penwright.yaml (or create the folders), then start again; `penwright doctor` checks them.",
        )
