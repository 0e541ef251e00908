"""penwright.yaml: defaults, unknown keys with their line, number validation, malformed YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from penwright.errors import SettingsError
from penwright.project import ProjectSettings, load_project
from penwright.settings_doc import commented_settings
from penwright.yamlio import parse_yaml


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "penwright.yaml").write_text(text)
    return tmp_path


def test_defaults_when_file_is_empty(tmp_path):
    project = load_project(write(tmp_path, ""))
    assert project.settings.model.base == "builtin:tiny"
    assert project.settings.server.host == "127.0.0.1"
    assert project.manuscript_dirs == [(tmp_path / "manuscript").resolve()]
    assert project.paths.database == tmp_path / ".penwright" / "penwright.db"


def test_unknown_key_is_named_with_its_line(tmp_path):
    write(tmp_path, "title: X\nmodel:\n  base: builtin:tiny\n  bakend: cpu\n")
    with pytest.raises(SettingsError) as err:
        load_project(tmp_path)
    text = str(err.value)
    assert "unknown key 'model.bakend'" in text
    assert "line 4" in text
    assert str(tmp_path / "penwright.yaml") in text


def test_every_problem_reported_at_once(tmp_path):
    write(tmp_path, "server:\n  port: 99999\nretrain:\n  min_new_words: -5\ncuration:\n  valid_fraction: 2\n")
    with pytest.raises(SettingsError) as err:
        load_project(tmp_path)
    assert len(err.value.problems) == 3
    assert any("line 2" in p and "server.port" in p for p in err.value.problems)
    assert any("line 4" in p and "retrain.min_new_words" in p for p in err.value.problems)


def test_scientific_notation_is_a_number():
    data, _ = parse_yaml("lr: 1e-5\nother: 3E+2\nname: e5\n")
    assert data == {"lr": 1e-5, "other": 300.0, "name": "e5"}


def test_malformed_yaml_names_line(tmp_path):
    write(tmp_path, "model:\n  base: [unclosed\n")
    with pytest.raises(SettingsError) as err:
        load_project(tmp_path)
    assert "malformed YAML" in str(err.value) and "line" in str(err.value)


def test_top_level_must_be_mapping(tmp_path):
    write(tmp_path, "- just\n- a list\n")
    with pytest.raises(SettingsError, match="mapping"):
        load_project(tmp_path)


def test_state_folder_inside_manuscript_is_refused(tmp_path):
    write(tmp_path, "manuscript:\n  folders: ['.']\n")
    with pytest.raises(SettingsError, match="state folder"):
        load_project(tmp_path)


def test_commented_settings_round_trip_to_defaults():
    data, _ = parse_yaml(commented_settings())
    assert ProjectSettings.model_validate(data) == ProjectSettings()
    assert "# Proxy mode" in commented_settings()


def test_example_project_loads():
    project = load_project(Path(__file__).resolve().parents[2] / "examples" / "novel")
    assert project.settings.title == "The Light at Carrow Point"
    assert project.lore_dir.is_dir() and all(d.is_dir() for d in project.manuscript_dirs)
