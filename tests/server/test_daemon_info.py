"""`daemon.json` is trusted only while a live daemon holds the project's lock."""

from __future__ import annotations

import json
import subprocess
import sys

from penwright.server.daemon_info import daemon_url, read_daemon_info
from penwright.server.lsp.daemon import read_daemon_json

HOLD_LOCK = """
import fcntl, sys, time
fh = open(sys.argv[1], "a+")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_file_left_by_a_dead_daemon_is_ignored(tmp_path):
    state = tmp_path / ".penwright"
    state.mkdir()
    (state / "daemon.json").write_text(json.dumps({"host": "0.0.0.0", "port": 8765, "pid": 999999}))
    assert read_daemon_info(tmp_path) is None and read_daemon_json(tmp_path) is None
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(state / "daemon.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert read_daemon_info(tmp_path)["port"] == 8765
        assert read_daemon_json(tmp_path) == "http://127.0.0.1:8765"
    finally:
        holder.kill()
        holder.wait()
    assert read_daemon_json(tmp_path) is None  # the kernel dropped the lock with the process


def test_daemon_url_shapes():
    assert daemon_url({"url": "http://127.0.0.1:9000/"}) == "http://127.0.0.1:9000"
    assert daemon_url({"host": "::", "port": 1}) == "http://127.0.0.1:1"
    assert daemon_url({"host": "10.0.0.2", "port": 7}) == "http://10.0.0.2:7"
    assert daemon_url({"port": "8765"}) is None and daemon_url(None) is None and daemon_url([1]) is None


def test_missing_or_broken_file(tmp_path):
    assert read_daemon_info(tmp_path) is None
    (tmp_path / ".penwright").mkdir()
    (tmp_path / ".penwright" / "daemon.json").write_text("{not json")
    assert read_daemon_info(tmp_path) is None
