"""Issue 14's items outside the HTTP boundary, each with the behaviour that used to fail:
5 (exports never into the manuscript or lore), 6 (a key-protected daemon's `penwright status`), 7 (chat fitting
linear), 12 (a named pipe in the manuscript), 13 (a run published once across a kill; a damaged checkpoint falls
back), 14 (settings that would fail later are refused at start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from daemon_fixtures import daemon_app
from pwtest import copy_example, tree_digest


def penwright(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "penwright", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- item 5: outputs never inside the manuscript or lore -----------------------------------------------------------


@pytest.mark.parametrize("where", ["manuscript", "manuscript/exports", "lore", "lore/../lore/x", "lore/notes/new"])
def test_export_refuses_to_write_into_the_authors_folders(example_project, where):
    before = tree_digest(example_project / "manuscript") | tree_digest(example_project / "lore")
    r = penwright(
        "export",
        "--project",
        str(example_project),
        "--format",
        "ollama",
        "--out",
        str(example_project / where),
        "--merged",
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "never writes there" in r.stderr and "outside the manuscript and lore" in r.stderr
    assert tree_digest(example_project / "manuscript") | tree_digest(example_project / "lore") == before


def test_export_accepts_only_an_adapter_folder(example_project, tmp_path):
    not_adapter = example_project / "lore"
    r = penwright(
        "export",
        str(not_adapter),
        "--project",
        str(example_project),
        "--format",
        "ollama",
        "--out",
        str(tmp_path / "out"),
    )
    assert r.returncode == 2 and "is not an adapter folder" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


# -- item 6: a daemon with api_key ----------------------------------------------------------------------------------


def test_status_with_a_key_and_with_a_wrong_one(tiny_model_dir, tmp_path):
    with daemon_app(tiny_model_dir, tmp_path, api_key="s3cret") as (d, server):
        d.write_info("127.0.0.1", server.port)
        settings = d.project.root / "penwright.yaml"
        settings.write_text(settings.read_text() + "\nserver:\n  api_key: s3cret\n")
        r = penwright("status", "--project", str(d.project.root))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "live adapter" in r.stdout and "pending" in r.stdout
        settings.write_text(settings.read_text().replace("api_key: s3cret", "api_key: wrong"))
        r = penwright("status", "--project", str(d.project.root))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "answered 401" in r.stderr and "server.api_key" in r.stderr and "KeyError" not in r.stderr


# -- item 7: chat fitting is linear ---------------------------------------------------------------------------------


def test_a_5000_message_chat_is_fitted_in_seconds(tiny_model_dir, tmp_path):
    """It cost ~108 s of CPU for 2,000 messages (each dropped turn re-rendered and re-counted the whole chat)."""
    turns = [
        {"role": "user" if i % 2 else "assistant", "content": f"line {i}: the lamp was lit at dusk"}
        for i in range(5000)
    ]
    with daemon_app(tiny_model_dir, tmp_path) as (d, server):
        t0 = time.monotonic()
        r = httpx.post(
            server.url + "/v1/chat/completions",
            timeout=120,
            json={
                "model": "penwright:base",
                "messages": [{"role": "system", "content": "Be brief."}, *turns],
                "max_tokens": 2,
                "penwright": {"lore": False},
            },
        )
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text[:300]
        assert r.json()["usage"]["prompt_tokens"] <= d.services.engine.context_length - 2
        assert took < 15, took
        prompt = server_fit(d, turns)
        assert "line 4999" in prompt and "line 0:" not in prompt and "Be brief." in prompt


def server_fit(d, turns) -> str:
    from penwright.server.services import chat_fit

    engine = d.services.engine
    return chat_fit.fit_chat(
        [{"role": "system", "content": "Be brief."}, *turns], 300, engine.chat_prompt, engine.count_tokens
    )


# -- item 12: only regular files are read ---------------------------------------------------------------------------


def test_a_named_pipe_in_the_manuscript_is_skipped_not_waited_on(example_project):
    os.mkfifo(example_project / "manuscript" / "99-pipe.md")
    r = penwright("curate", "--project", str(example_project), timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "99-pipe.md" in r.stdout and "not a regular file" in r.stdout
    manifest = json.loads((example_project / ".penwright" / "datasets" / "current" / "manifest.json").read_text())
    assert manifest["totals"]["files"] >= 3


# -- item 13: one publish per run across a kill; a damaged checkpoint falls back -------------------------------------


def test_a_run_published_before_a_kill_is_not_published_again(tiny_model_dir, tmp_path):
    """A kill between "gate promoted" and "job finished" used to run the gate again: two versions from one run."""
    from serving_fixtures import adapters_for

    from penwright.project import load_project
    from penwright.server.daemon import Daemon
    from penwright.workspace import Workspace

    ads = adapters_for(tiny_model_dir, tmp_path.parent)
    project = load_project(copy_example(tmp_path / "novel"))
    first = Daemon(Workspace(project)).open()
    job = first.jobs.enqueue("manual")
    job = first.jobs.start(job.id, "run-killed-after-gate")
    v = first.registry.publish(
        ads["lighthouse"], base_model="builtin:tiny", run_id=job.run_id, metrics={"eval_loss": 2.0}
    )
    first.registry.promote(v.version, "gate: better than base")  # ...and the daemon was killed here
    first.lock.release()

    again = Daemon(Workspace(load_project(project.root))).open()  # recover(): the job is queued again, to resume
    resumed = again.jobs.get(job.id)
    assert resumed.status == "queued" and resumed.resume
    again.runner.start(resumed)
    deadline = time.monotonic() + 60
    while again.jobs.get(job.id).status not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    done = again.jobs.get(job.id)
    assert done.status == "succeeded", done
    assert done.adapter_version == v.version and done.decision == "promote"
    assert [x.version for x in again.registry.list()] == [v.version]
    assert again.registry.live().version == v.version
    again.close()


def test_a_candidate_published_before_a_kill_is_judged_once(tiny_model_dir, tmp_path):
    from serving_fixtures import adapters_for

    from penwright.project import load_project
    from penwright.server.daemon import Daemon
    from penwright.workspace import Workspace

    ads = adapters_for(tiny_model_dir, tmp_path.parent)
    project = load_project(copy_example(tmp_path / "novel"))
    first = Daemon(Workspace(project)).open()
    job = first.jobs.start(first.jobs.enqueue("auto").id, "run-killed-before-gate")
    first.registry.publish(
        ads["sailing"],
        base_model="builtin:tiny",
        run_id=job.run_id,
        metrics={"loss": float("nan"), "reference": {"loss": 3.0}, "reference_name": "base"},
    )
    first.lock.release()
    again = Daemon(Workspace(load_project(project.root))).open()
    again.runner.start(again.jobs.get(job.id))
    deadline = time.monotonic() + 60
    while again.jobs.get(job.id).status not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    done = again.jobs.get(job.id)
    assert done.status == "succeeded" and done.decision == "reject"  # no finite held-out loss: rejected, once
    versions = again.registry.list()
    assert len(versions) == 1 and versions[0].status == "rejected" and "finite" in versions[0].reason
    again.close()


def test_a_truncated_checkpoint_falls_back_to_the_one_before(tmp_path):
    import torch
    from safetensors.torch import save_file

    from penwright.trainer.runs import RunDir

    run = RunDir(tmp_path / "run")

    def save(folder: Path) -> None:
        folder.mkdir(parents=True)
        save_file({"lora_A": torch.ones(8, 4)}, folder / "adapter_model.safetensors")

    for step in (2, 4):
        run.write_checkpoint(step, save, {"loop": {"step": step}}, {"eval_loss": 1.0 / step}, keep_best=2)
    latest = run.checkpoints / "step-4" / "adapter" / "adapter_model.safetensors"
    latest.write_bytes(latest.read_bytes()[:40])  # the disk filled up while it was copied
    step, path, _ = run.usable_checkpoint()
    assert step == 2 and path.name == "step-2"
    assert (run.checkpoints / ".damaged-step-4").is_dir() and not (run.checkpoints / "step-4").exists()
    (path / "state.pt").write_bytes(b"\x80\x02truncated")
    assert run.usable_checkpoint() is None  # nothing usable left: the run starts over instead of failing


# -- item 14: settings that would fail later are refused now --------------------------------------------------------


def test_an_unknown_preset_stops_serve_and_doctor(tmp_path):
    project = copy_example(tmp_path / "novel")
    settings = project / "penwright.yaml"
    settings.write_text(settings.read_text().replace("preset: fast", "preset: fastest"))
    r = penwright("serve", "--project", str(project), "--port", "0")
    assert r.returncode == 2 and "unknown training preset 'fastest'" in r.stderr, r.stderr
    d = penwright("doctor", "--project", str(project))
    assert d.returncode == 1 and "preset" in d.stdout and "fastest" in d.stdout


def test_missing_folders_stop_serve(tmp_path):
    project = copy_example(tmp_path / "novel")
    (project / "lore").rename(project / "lore-old")
    r = penwright("serve", "--project", str(project), "--port", "0")
    assert r.returncode == 2 and "lore.folder" in r.stderr and "does not exist" in r.stderr, r.stderr
    assert not (project / ".penwright" / "daemon.json").exists()


def test_duplicate_yaml_keys_are_refused_with_both_lines(tmp_path):
    from penwright.errors import SettingsError
    from penwright.project import load_project

    project = copy_example(tmp_path / "novel")
    settings = project / "penwright.yaml"
    settings.write_text(settings.read_text() + "\ntitle: Again\n")
    with pytest.raises(SettingsError, match="'title' is set twice"):
        load_project(project)


# -- item 10 (CLI): a huge version number ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [str(2**70), "v99999999999999999999"])
def test_adapters_show_a_huge_version_says_there_is_none(example_project, version):
    r = penwright("adapters", "--project", str(example_project), "show", version)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "There is no adapter version" in r.stderr and "Traceback" not in r.stderr
