"""The standby training child: started ahead of its job, it outlives the thread that started it (Linux's
parent-death signal is per thread), takes its spec from stdin, and is closed with the daemon."""

from __future__ import annotations

import json
import threading
import time

from penwright.server.daemon.child import ChildRun, Standby


def _standby_from_a_thread_that_ends() -> Standby:
    standby = Standby(enabled=True)
    t = threading.Thread(target=standby.ensure)  # as after a job: its thread ends right after
    t.start()
    t.join()
    return standby


def test_the_standby_outlives_the_thread_that_asked_for_it():
    standby = _standby_from_a_thread_that_ends()
    try:
        time.sleep(1.5)
        assert standby.proc is not None and standby.proc.poll() is None
    finally:
        proc = standby.proc
        standby.close()
    assert proc.poll() is not None and standby.take() is None


def test_a_job_adopts_the_standby_and_reports_a_bad_spec_as_its_own_failure(tmp_path):
    standby = _standby_from_a_thread_that_ends()
    waiting = standby.proc
    spec = {"run_dir": str(tmp_path / "run"), "preset": "fast", "dataset_dir": str(tmp_path / "missing")}
    events: list[dict] = []
    run = ChildRun(spec, tmp_path / "job.json", events.append, standby=standby.take())
    assert run.from_standby and run.pid == waiting.pid
    outcome = run.wait(timeout=120)
    assert json.loads((tmp_path / "job.json").read_text())["preset"] == "fast"
    assert outcome.status == "failed" and outcome.error, outcome


def test_off_means_no_process():
    standby = Standby(enabled=False)
    standby.ensure()
    assert standby.proc is None and standby.take() is None
