"""The CLI as a user runs it: init, doctor, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from penwright.project import load_project


def penwright(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "penwright", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_init_scaffolds_a_loadable_project(tmp_path):
    out = penwright("init", str(tmp_path / "book"), "--title", "My Book")
    assert out.returncode == 0, out.stderr
    project = load_project(tmp_path / "book")
    assert project.settings.title == "My Book"
    assert (tmp_path / "book" / "lore" / "example-character.md").read_text().startswith("---\nname: Example Character")
    assert (tmp_path / "book" / "manuscript").is_dir()
    again = penwright("init", str(tmp_path / "book"))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_error_is_a_message_not_a_traceback(tmp_path):
    (tmp_path / "penwright.yaml").write_text("model:\n  colour: blue\n")
    out = penwright("doctor", "--project", str(tmp_path))
    assert out.returncode != 0
    assert "unknown key 'model.colour'" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_doctor_reports_machine_and_model(example_project):
    out = penwright("doctor", "--project", str(example_project))
    assert "torch" in out.stdout and "2.13" in out.stdout
    assert "builtin:tiny" in out.stdout and "demo model" in out.stdout
    assert "disk" in out.stdout


def test_help_imports_no_model_libraries():
    """`penwright --help` builds every verb's parser: none may import a model library at module level."""
    heavy = {"torch", "transformers", "peft", "chromadb", "sentence_transformers", "datasets", "numpy"}
    code = (
        "import sys, json, contextlib, io\n"
        "from penwright.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps([out.getvalue(), sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    help_text, loaded = json.loads(done.stdout)
    assert "curate" in help_text and "serve" in help_text and "lsp" in help_text  # the probe built every verb
    assert not heavy & set(loaded), f"heavy imports behind `penwright --help`: {sorted(heavy & set(loaded))}"
