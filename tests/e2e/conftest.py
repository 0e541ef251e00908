"""One real daemon shared by the e2e tests of the daemon and its dashboard (starting one costs ~30 s here)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_proc import EXAMPLE, DaemonProcess, configure  # noqa: E402


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("e2e") / "novel"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".penwright"))
    configure(dest, min_new_words=1200)  # the example's ~900 words alone do not trigger a retrain
    return dest


@pytest.fixture(scope="session")
def shared_daemon(shared_project, tmp_path_factory):
    d = DaemonProcess(shared_project, tmp_path_factory.mktemp("logs") / "daemon.log").start()
    d.wait_event(lambda e: e["type"] == "daemon.ready", timeout=180)
    yield d
    assert d.stop() == 0, d.log_text()[-2000:]
    assert not (shared_project / ".penwright" / "daemon.json").exists()  # a clean stop removes it
