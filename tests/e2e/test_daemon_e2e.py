"""The real daemon (`penwright serve` as a subprocess) on a temp copy of examples/novel with builtin:tiny.

Default suite: one daemon for the main flows (edit -> curate -> job -> gate -> promotion -> completion from
the new version; "retrain now" with warm start; cancel; a second daemon refused). Slow-marked: kill -9 of the
training child, kill -9 of the daemon mid-job and restart-resume, a disk filling during a checkpoint (a real
tmpfs), a file saved every 100 ms for a full minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_proc import NEW_SCENE, DaemonProcess, configure, pid_alive, tree_digest

CHAPTER = "manuscript/03-the-ledger.md"


@pytest.fixture()
def project(shared_project) -> Path:
    return shared_project


@pytest.fixture()
def daemon(shared_daemon) -> DaemonProcess:
    return shared_daemon


def _job_events(d: DaemonProcess, job_id: int, after: int, final: str = "job.finished", timeout: float = 240):
    return d.wait_event(lambda e: e.get("job_id") == job_id and e["type"] in (final, "job.failed"), timeout, after)


def test_edit_a_chapter_to_promotion_and_a_completion_from_the_new_version(daemon, project):
    import openai

    lore_before = tree_digest(project / "lore")
    ready = daemon.of_type("daemon.ready")[-1]
    assert ready["pending_words"] < 1200 and not daemon.of_type("job.queued")
    mark = daemon.last_id
    with open(project / CHAPTER, "a", encoding="utf-8") as fh:  # the author saves a new scene
        fh.write(NEW_SCENE)
    curate = daemon.wait_event(lambda e: e["type"] == "curate" and CHAPTER in e.get("files", []), 60, mark)
    assert curate["pending_words"] >= 1200, curate
    queued = daemon.wait_event(lambda e: e["type"] == "job.queued", 60, curate["id"])
    assert queued["trigger"] == "auto"
    job = queued["job_id"]
    started = daemon.wait_event(lambda e: e["type"] == "job.started" and e["job_id"] == job, 60, mark)
    assert started["warm_start"] is False and started["dataset"]["rows"] > 0  # first adapter: the whole set
    progress = daemon.wait_event(lambda e: e["type"] == "job.progress" and e.get("step") == 4, 180, started["id"])
    assert progress["total"] == 4 and progress["loss"] > 0
    finished = _job_events(daemon, job, started["id"])
    assert finished["type"] == "job.finished", finished
    gate = daemon.wait_event(lambda e: e["type"] == "gate" and e["job_id"] == job, 30, mark)
    assert gate["decision"] == "promote", gate["reason"]
    assert gate["reference_name"] == "base" and gate["candidate"]["perplexity"] > 0  # the first adapter vs the base
    promoted = daemon.wait_event(lambda e: e["type"] == "adapter.promoted", 30, gate["id"] - 1)
    version = promoted["version"]
    daemon.wait_event(lambda e: e["type"] == "adapter.swapped" and e["version"] == version, 30, mark)

    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="none")
    raw = client.completions.with_raw_response.create(
        model="penwright", prompt="The lamp at Carrow Point", max_tokens=8
    )
    completion = raw.parse()
    assert raw.headers["X-Penwright-Adapter"] == f"penwright@v{version}"
    assert completion.model_extra["penwright"]["adapter"] == f"penwright@v{version}"
    assert completion.choices[0].text  # the new version wrote something

    jobs = daemon.api("GET", "/api/jobs").json()["jobs"]
    assert jobs[0]["id"] == job and jobs[0]["status"] == "succeeded" and jobs[0]["adapter_version"] == version
    adapters = daemon.api("GET", "/api/adapters").json()
    assert adapters["live"] == version
    assert tree_digest(project / "lore") == lore_before


def test_retrain_now_warm_starts_from_the_live_adapter(daemon, project):
    live_before = daemon.api("GET", "/api/adapters").json()["live"]
    assert live_before is not None, "runs after the first test"
    mark = daemon.last_id
    r = daemon.api("POST", "/api/train", json={})
    assert r.status_code == 200
    job = r.json()["job"]
    assert job["status"] == "queued" and job["trigger"] == "manual"
    started = daemon.wait_event(lambda e: e["type"] == "job.started" and e["job_id"] == job["id"], 60, mark)
    assert started["warm_start"] is True
    finished = _job_events(daemon, job["id"], mark)
    assert finished["type"] == "job.finished", finished
    assert finished["timings"]["standby"] is True  # the child started when the last job ended, its imports done
    gate = daemon.wait_event(lambda e: e["type"] == "gate" and e["job_id"] == job["id"], 30, mark)
    assert gate["reference_name"] == f"penwright@v{live_before}"  # judged against the live adapter
    import yaml

    from penwright.server.daemon.keeper import WARM_LR_SCALE
    from penwright.trainer.presets import load_training_settings

    configs = sorted((project / ".penwright" / "runs").glob("*/config.yaml"), key=lambda p: p.stat().st_mtime)
    trained = yaml.safe_load(configs[-1].read_text())["training"]
    assert trained["learning_rate"] == pytest.approx(load_training_settings("fast").learning_rate * WARM_LR_SCALE)
    versions = {v["version"]: v for v in daemon.api("GET", "/api/adapters").json()["adapters"]}
    candidate = versions[gate["version"]]
    if gate["decision"] == "promote":
        assert candidate["status"] == "live"
    else:  # a rejected candidate stays, with the reason
        assert candidate["status"] == "rejected" and candidate["reason"] == gate["reason"]


def test_cancel_is_immediate_and_leaves_no_adapter(daemon, project):
    versions_before = [v["version"] for v in daemon.api("GET", "/api/adapters").json()["adapters"]]
    mark = daemon.last_id
    job = daemon.api("POST", "/api/train", json={"overrides": {"max_steps": 400}}).json()["job"]
    daemon.wait_event(lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"] and e.get("step"), 120, mark)
    t0 = time.monotonic()
    r = daemon.api("POST", f"/api/jobs/{job['id']}/cancel")
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["job"]["status"] == "cancelled", r.text
    assert took < 5
    daemon.wait_event(lambda e: e["type"] == "job.cancelled" and e["job_id"] == job["id"], 10, mark)
    run_dir = project / ".penwright" / "runs" / r.json()["job"]["run_id"]
    assert not (run_dir / "adapter").exists() and not (run_dir / "checkpoints").exists()
    assert [v["version"] for v in daemon.api("GET", "/api/adapters").json()["adapters"]] == versions_before
    assert not list((project / ".penwright" / "adapters").rglob(".staging-*"))
    # cancelling an unknown job is a clear 404; a queued job cancels without running
    assert daemon.api("POST", "/api/jobs/9999/cancel").status_code == 404
    bad = daemon.api("POST", "/api/train", json={"preset": "no_such_preset"})
    assert bad.status_code == 400 and "unknown training preset" in bad.json()["error"]["message"]


def test_second_daemon_on_the_same_project_is_refused(daemon, project):
    out = subprocess.run(
        [sys.executable, "-m", "penwright", "serve", "--project", str(project), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"Another Penwright daemon (pid {daemon.proc.pid}) is already running" in out.stderr
    assert "One daemon per project" in out.stderr
    assert daemon.api("GET", "/health").status_code == 200  # the running one is untouched


def test_dashboard_state_and_status_cli(daemon, project):
    state = daemon.api("GET", "/api/dashboard").json()
    assert state["live"]["status"] == "live" and state["jobs"]
    out = subprocess.run(
        [sys.executable, "-m", "penwright", "status", "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"penwright@v{state['live']['version']}" in out.stdout and "job" in out.stdout


def test_burst_of_1000_file_events_is_one_or_two_curations(daemon, project):
    mark = daemon.last_id
    folder = project / "manuscript" / "burst"
    folder.mkdir()
    for rnd in range(50):  # 20 files x 50 saves = 1,000 saves (several inotify events each)
        for i in range(20):
            (folder / f"note-{i:02d}.md").write_text(f"Scene {i}, draft {rnd}. The lamp burned low over the ledger.\n")
    last = daemon.wait_event(
        lambda e: e["type"] == "curate" and "manuscript/burst/note-19.md" in e.get("files", []), 60, mark
    )
    time.sleep(1.5)
    curations = daemon.of_type("curate", after=mark)
    assert 1 <= len(curations) <= 3, [c["files"][:3] for c in curations]
    assert not any(e["type"] == "error" for e in daemon.events if e["id"] > mark)
    manifest = json.loads((project / ".penwright" / "datasets" / "current" / "manifest.json").read_text())
    assert any("note-19.md" in name for name in manifest["files"]), list(manifest["files"])[:5]
    assert last["pending_words"] >= 0 and daemon.api("GET", "/health").status_code == 200


def test_file_saved_every_100ms_is_curated_at_bounded_intervals(daemon, project):
    """Shortened to 6 s here; the watcher's slow test saves every 100 ms for a full minute."""
    mark = daemon.last_id
    target = project / "manuscript" / "burst" / "note-00.md"
    end, n = time.monotonic() + 6, 0
    while time.monotonic() < end:
        target.write_text(f"Save number {n}. The gulls had gone inland hours ago.\n")
        n += 1
        time.sleep(0.1)
    daemon.wait_event(lambda e: e["type"] == "curate" and e["id"] > mark and e["time"] > time.time() - 0.5, 30, mark)
    curations = [c for c in daemon.of_type("curate", after=mark) if "manuscript/burst/note-00.md" in c["files"]]
    assert 1 <= len(curations) <= 3  # max-wait flushes (>= 5 s apart at quiet 0.5 s), then the final one
    assert daemon.api("GET", "/health").status_code == 200


# ---- faults (each starts its own daemon; the tmpfs one is slow and needs root) ----


@pytest.fixture()
def fresh(tmp_path, example_project):
    configure(example_project, min_new_words=100000)  # only manual jobs
    procs = []

    def start() -> DaemonProcess:
        d = DaemonProcess(example_project, tmp_path / "daemon.log").start()
        procs.append(d)
        return d

    yield example_project, start
    for d in procs:
        d.stop()


def _running_child(d: DaemonProcess, job_id: int) -> int:
    for _ in range(100):
        job = d.api("GET", f"/api/jobs/{job_id}").json()["job"]
        if job["pid"]:
            return job["pid"]
        time.sleep(0.1)
    raise AssertionError("the job never got a child pid")


def _final_job(d: DaemonProcess, job_id: int, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = d.api("GET", f"/api/jobs/{job_id}").json()["job"]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_training_child_killed_with_9_fails_the_job_not_the_daemon(fresh):
    project, start = fresh
    d = start()
    job = d.api("POST", "/api/train", json={"overrides": {"max_steps": 400}}).json()["job"]
    d.wait_event(lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"] and e.get("step"), 180)
    os.kill(_running_child(d, job["id"]), 9)
    failed = d.wait_event(lambda e: e["type"] == "job.failed" and e["job_id"] == job["id"], 30)
    assert "killed by signal 9" in failed["error"] and "live adapter" in failed["error"]
    assert d.api("GET", "/health").status_code == 200
    assert d.api("GET", "/api/adapters").json()["adapters"] == []  # nothing half-published
    again = d.api("POST", "/api/train", json={}).json()["job"]  # and the next job runs normally
    assert (
        d.wait_event(lambda e: e.get("job_id") == again["id"] and e["type"] in ("job.finished", "job.failed"), 240)[
            "type"
        ]
        == "job.finished"
    )


def test_daemon_killed_with_9_mid_job_resumes_from_its_checkpoint(fresh):
    project, start = fresh
    d = start()
    job = d.api("POST", "/api/train", json={"overrides": {"max_steps": 10, "save_every": 2}}).json()["job"]
    d.wait_event(lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"] and (e.get("step") or 0) >= 3, 240)
    child = _running_child(d, job["id"])
    run_id = d.api("GET", f"/api/jobs/{job['id']}").json()["job"]["run_id"]
    assert list((project / ".penwright" / "runs" / run_id / "checkpoints").iterdir())
    d.kill9()
    for _ in range(100):  # the child dies with its daemon (parent-death signal)
        if not pid_alive(child):
            break
        time.sleep(0.1)
    assert not pid_alive(child)
    d2 = start()  # the kernel released the lock with the dead process
    queued = d2.wait_event(lambda e: e["type"] == "job.queued" and e["job_id"] == job["id"], 60)
    assert queued["resume"] is True
    started = d2.wait_event(lambda e: e["type"] == "job.started" and e["job_id"] == job["id"], 60)
    assert started["resume"] is True and started["run_id"] == run_id
    first = d2.wait_event(lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"] and e.get("step"), 240)
    assert first["step"] >= 3  # continued from the checkpoint, not from step 1
    end = d2.wait_event(lambda e: e.get("job_id") == job["id"] and e["type"] in ("job.finished", "job.failed"), 240)
    assert end["type"] == "job.finished", end
    d2.wait_event(lambda e: e["type"] == "gate" and e["job_id"] == job["id"], 120)
    final = _final_job(d2, job["id"])
    assert final["status"] == "succeeded" and final["attempts"] == 2 and final["step"] == 10


@pytest.mark.slow
def test_disk_filling_during_a_checkpoint(fresh):
    """A real 8 MB tmpfs under .penwright/runs, filled up while the job trains (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    project, start = fresh
    runs = project / ".penwright" / "runs"
    runs.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(runs)], check=True)
    try:
        d = start()
        job = d.api("POST", "/api/train", json={"overrides": {"max_steps": 400, "save_every": 3}}).json()["job"]
        d.wait_event(lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"] and e.get("step") == 1, 240)
        filler = runs / "filler.bin"
        with open(filler, "wb") as fh:  # the disk fills up before the step-3 checkpoint
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        failed = d.wait_event(lambda e: e["type"] == "job.failed" and e["job_id"] == job["id"], 240)
        assert "disk is full" in failed["error"] and "live adapter" in failed["error"]
        assert d.api("GET", "/health").status_code == 200
        assert d.api("GET", "/api/adapters").json()["adapters"] == []
        filler.unlink()  # space is back: the next job succeeds, nothing is corrupt
        again = d.api("POST", "/api/train", json={}).json()["job"]
        end = d.wait_event(
            lambda e: e.get("job_id") == again["id"] and e["type"] in ("job.finished", "job.failed"), 240
        )
        assert end["type"] == "job.finished", end
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)
