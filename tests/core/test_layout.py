"""The folders are the architecture: dependency direction and the installed namespace."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "trainer": ("penwright.server", "penwright.rag", "penwright.project", "penwright.cli"),
    "rag": ("penwright.server", "penwright.trainer", "penwright.project", "penwright.cli"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_trainer_and_rag_never_import_server_or_each_other():
    offences = []
    for folder, banned in FORBIDDEN.items():
        for path in (REPO / folder).rglob("*.py"):
            for name in imports_of(path):
                if name.startswith(banned) or name.split(".")[0] in {"server", "trainer", "rag"}:
                    offences.append(f"{path.relative_to(REPO)} imports {name}")
    assert offences == []


def test_server_never_imports_the_cli_and_the_cli_only_server_entry_points():
    """The CLI verbs are a front end: they call the server's public entry points (the daemon's `serve`, the
    language server, the app), never its internals; the server never imports a CLI verb."""
    allowed_from_cli = (
        "penwright.server.continue_config",
        "penwright.server.events",  # the event stream's wire format (`penwright status --follow` reads it)
        "penwright.server.daemon",
        "penwright.server.daemon_info",
        "penwright.server.lsp",
        "penwright.server.settings",
        "penwright.server.app",
        "penwright.server.context",
    )
    offences = []
    for path in (REPO / "server").rglob("*.py"):
        offences += [f"{path.relative_to(REPO)} imports {n}" for n in imports_of(path) if n.startswith("penwright.cli")]
    for path in (REPO / "penwright" / "cli").rglob("*.py"):
        for name in imports_of(path):
            if name.startswith("penwright.server") and not name.startswith(allowed_from_cli):
                offences.append(f"{path.relative_to(REPO)} imports {name}")
            if name.startswith("penwright.server.daemon.") and name != "penwright.server.daemon.serve":
                offences.append(f"{path.relative_to(REPO)} imports daemon internals ({name})")
    assert offences == []


def test_wheel_installs_only_the_penwright_namespace(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("penwright-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("penwright-")}
    assert top == {"penwright"}
    for module in (
        "penwright/server/settings.py",
        "penwright/trainer/tiny.py",
        "penwright/rag/settings.py",
        "penwright/cli/__init__.py",
        "penwright/trainer/evaluate/references.json",
        "penwright/trainer/evaluate/control.txt",
    ):
        assert module in names
