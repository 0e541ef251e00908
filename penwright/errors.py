"""Errors meant for the author.

Every exception here says what was wrong and what to do about it. Code raises
these at the boundary (settings, files, HTTP input, CLI arguments); the CLI
prints `str(err)` without a traceback and the HTTP layer answers each with its
own `status` and `code` (one mapper: server/services/errors.py `api_error`), in
the OpenAI error shape. Anything else reaching the user is a bug.
"""

from __future__ import annotations

from pathlib import Path


class PenwrightError(Exception):
    """Base class: a problem the user can fix. `hint` says how."""

    hint: str = ""
    exit_code: int = 2
    status: int = 400  # the HTTP status the daemon answers with
    code: str = "invalid_request"  # the machine-readable `error.code`
    param: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class SettingsError(PenwrightError):
    """penwright.yaml (or a preset) is missing, malformed or invalid."""

    code = "invalid_settings"

    def __init__(self, problems: list[str], path: Path | str | None = None, hint: str | None = None):
        where = f" in {path}" if path else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"Invalid settings{where}:\n{lines}",
            hint or "Fix the lines above; `penwright init` writes a commented example.",
        )
        self.problems = problems
        self.path = path


class ProjectNotFoundError(PenwrightError):
    code = "project_not_found"

    def __init__(self, start: Path):
        super().__init__(
            f"No penwright.yaml found in {start} or any folder above it.",
            "Run `penwright init` in your writing project's folder, or pass --project PATH.",
        )


class InputFileError(PenwrightError):
    """A manuscript, lore or dataset file could not be used. The rest of the folder still is."""

    code = "input_file_error"

    def __init__(self, path: Path | str, problem: str, hint: str | None = None, line: int | None = None):
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}", hint or "The file was skipped; nothing in it was changed.")
        self.path = str(path)
        self.line = line
        self.problem = problem


class ModelNotFoundError(PenwrightError):
    code = "base_model_not_available"

    def __init__(self, spec: str, detail: str = ""):
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"Base model '{spec}' is not available{extra}.",
            "Use a local folder with config.json and tokenizer files, a hub id that is already in your "
            "Hugging Face cache (downloads need network access), or `builtin:tiny` for a demo model. "
            "`penwright doctor` checks this.",
        )


class DatasetError(PenwrightError):
    """A training set cannot be used (empty, too small, wrong tokenizer...)."""

    code = "dataset_error"


class TrainingError(PenwrightError):
    """A training run cannot start or continue."""

    code = "training_error"


class RegistryError(PenwrightError):
    """A registry operation is not allowed in the adapters' current state (live, rejected, files missing...)."""

    status, code = 409, "adapter_conflict"


class AdapterNotFoundError(RegistryError):
    """No adapter version by that number."""

    status, code, param = 404, "model_not_found", "model"

    def __init__(self, version: int):
        super().__init__(f"There is no adapter version v{version}.", "`penwright adapters list` shows them.")
        self.version = version


class NotFoundError(PenwrightError):
    """Something the request names does not exist (a job, a run)."""

    status, code = 404, "not_found"


class LoreError(PenwrightError):
    """The lore folder or index has a problem."""

    code = "lore_error"


class ServeError(PenwrightError):
    """The daemon cannot start or serve as configured."""

    status, code = 503, "engine_unavailable"


class DaemonLockedError(ServeError):
    status, code = 409, "daemon_running"

    def __init__(self, project: Path, pid: int | None):
        who = f" (pid {pid})" if pid else ""
        super().__init__(
            f"Another Penwright daemon{who} is already running for {project}.",
            "One daemon per project: use the running one (`penwright status`), or stop it first.",
        )


class ProtectedPathError(PenwrightError):
    """An output would land inside the manuscript or lore folders, which Penwright never writes into."""

    code = "protected_path"

    def __init__(self, path: Path | str, folder: Path | str):
        super().__init__(
            f"{path} is inside {folder}, where your manuscript or lore lives; Penwright never writes there.",
            "Choose an output folder outside the manuscript and lore folders (e.g. exports/ in the project).",
        )
        self.path, self.folder = str(path), str(folder)
