"""`retrain.pause_while_typing`: completion requests stop the training child; it continues once they stop.

Its own daemon (the setting changes how every other e2e flow times its jobs), on a temp copy of examples/novel.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from daemon_proc import EXAMPLE, DaemonProcess, configure


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]  # "pid (name) S ..."


def wait_state(pid: int, states: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while (state := proc_state(pid)) not in states and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


@pytest.fixture()
def daemon(tmp_path):
    project = tmp_path / "novel"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".penwright"))
    configure(project, min_new_words=100_000)  # no automatic retrain: this test starts the job
    settings = project / "penwright.yaml"
    settings.write_text(
        settings.read_text().replace(
            "  gate_margin: 0.5\n", "  gate_margin: 0.5\n  pause_while_typing: true\n  pause_quiet_seconds: 2\n"
        )
    )
    d = DaemonProcess(project, tmp_path / "daemon.log").start()
    d.wait_event(lambda e: e["type"] == "daemon.ready", timeout=180)
    yield d
    d.stop()


def test_training_stops_while_completions_are_requested_and_then_continues(daemon):
    mark = daemon.last_id
    job = daemon.api("POST", "/api/train", json={"overrides": {"max_steps": 400}}).json()["job"]
    first = daemon.wait_event(
        lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"] and e.get("step"), 180, mark
    )
    pid = daemon.api("GET", "/api/jobs").json()["jobs"][0]["pid"]
    assert wait_state(pid, "RSD") in "RSD"  # training: running or between syscalls

    typing = daemon.api(
        "POST", "/v1/completions", json={"model": "penwright", "prompt": "The harbour", "max_tokens": 2}
    )
    assert typing.status_code == 200, typing.text
    paused = daemon.wait_event(lambda e: e["type"] == "job.paused" and e["job_id"] == job["id"], 30, first["id"])
    assert wait_state(pid, "Tt") in "Tt"  # stopped: no CPU while the author writes
    for _ in range(3):  # more keystrokes: still paused, one pause event only
        assert daemon.api("POST", "/v1/completions", json={"prompt": "The harbour", "max_tokens": 2}).status_code == 200
        assert proc_state(pid) in "Tt"
        time.sleep(0.5)
    assert len(daemon.of_type("job.paused", mark)) == 1

    resumed = daemon.wait_event(lambda e: e["type"] == "job.resumed" and e["job_id"] == job["id"], 30, paused["id"])
    assert wait_state(pid, "RSD") in "RSD"
    later = daemon.wait_event(lambda e: e["type"] == "job.progress" and e["job_id"] == job["id"], 120, resumed["id"])
    assert later["step"] > first["step"]  # it went on from where it was
    cancelled = daemon.api("POST", f"/api/jobs/{job['id']}/cancel")
    assert cancelled.json()["job"]["status"] == "cancelled", cancelled.text
