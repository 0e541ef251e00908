"""The watcher on a real folder with real watchdog events: debounce, editor saves, junk, bursts, folder loss."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from penwright.server.daemon.watcher import Batch, Watcher, WatchRoot, is_editor_junk


class Collector:
    def __init__(self):
        self.batches: list[Batch] = []
        self.errors: list[str] = []
        self.cond = threading.Condition()

    def on_batch(self, batch: Batch) -> None:
        with self.cond:
            self.batches.append(batch)
            self.cond.notify_all()

    def on_error(self, msg: str) -> None:
        with self.cond:
            self.errors.append(msg)
            self.cond.notify_all()

    def wait(self, pred, timeout=10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def changed(self) -> list[str]:
        return [p.name for b in self.batches for p in b.changed]

    def deleted(self) -> list[str]:
        return [p.name for b in self.batches for p in b.deleted]


@pytest.fixture()
def watched(tmp_path):
    ms = tmp_path / "manuscript"
    ms.mkdir()
    (ms / "01.md").write_text("One.\n")
    (tmp_path / ".penwrightignore").write_text("# comment\ndrafts/\n*.secret.md\n")
    col = Collector()
    w = Watcher(
        [WatchRoot("manuscript", ms, ["**/*.md", "**/*.txt"], ["**/notes-*.md"])],
        col.on_batch,
        col.on_error,
        quiet_seconds=0.3,
        max_wait_s=1.5,
        ignore_file=tmp_path / ".penwrightignore",
        project_root=tmp_path,
    ).start()
    yield ms, col, w
    w.stop()


def test_filters():
    assert is_editor_junk(".#01.md") and is_editor_junk("01.md~") and is_editor_junk(".01.md.swp")
    assert is_editor_junk("4913") and is_editor_junk("~$chapter.docx") and is_editor_junk("#01.md#")
    assert not is_editor_junk("01-the-lamp.md")


def test_in_place_save_is_debounced_into_one_batch(watched):
    ms, col, w = watched
    for i in range(5):
        (ms / "01.md").write_text(f"One, version {i}.\n")
        time.sleep(0.05)
    assert col.wait(lambda: col.batches)
    time.sleep(0.6)
    assert col.changed() == ["01.md"] and len(col.batches) == 1


def test_temp_file_and_rename_save_and_junk_ignored(watched):
    ms, col, w = watched
    tmp = ms / ".01.md.swp"
    tmp.write_text("swap")
    (ms / "01.md~").write_text("backup")
    (ms / "4913").write_text("")
    staged = ms / ".01.md.tmp123"
    staged.write_text("One, renamed into place.\n")
    os.replace(staged, ms / "01.md")  # how many editors save
    (ms / "drafts").mkdir()
    (ms / "drafts" / "x.md").write_text("ignored by .penwrightignore")
    (ms / "notes-1.md").write_text("excluded by glob")
    (ms / "image.png").write_bytes(b"\x89PNG")
    assert col.wait(lambda: col.batches)
    time.sleep(0.8)
    assert col.changed() == ["01.md"], col.batches
    assert col.deleted() == []


def test_create_move_delete(watched):
    ms, col, w = watched
    (ms / "part2").mkdir()
    (ms / "part2" / "02.md").write_text("Two.\n")
    assert col.wait(lambda: "02.md" in col.changed())
    os.rename(ms / "part2" / "02.md", ms / "part2" / "02-renamed.md")
    assert col.wait(lambda: "02-renamed.md" in col.changed() and "02.md" in col.deleted())
    (ms / "01.md").unlink()
    assert col.wait(lambda: "01.md" in col.deleted())


def test_burst_of_1000_events_is_coalesced(watched):
    ms, col, w = watched
    for i in range(200):
        (ms / f"b{i:03d}.md").write_text(f"file {i}\n")
    for i in range(200):
        (ms / f"b{i:03d}.md").write_text(f"file {i} edited\n")
    assert col.wait(lambda: len(set(col.changed())) >= 200, timeout=20)
    time.sleep(0.8)
    assert w.events_seen >= 400  # created + modified + closed for 400 writes
    assert set(col.changed()) == {f"b{i:03d}.md" for i in range(200)}
    assert len(col.batches) <= 10  # coalesced, not one callback per event


def test_file_saved_every_100ms_is_still_picked_up(watched):
    """max_wait bounds the delay while saves never pause (shortened from a minute; the slow test runs the full one)."""
    ms, col, w = watched
    end = time.monotonic() + 4
    n = 0
    while time.monotonic() < end:
        (ms / "01.md").write_text(f"save {n}\n")
        n += 1
        time.sleep(0.1)
    assert col.wait(lambda: len(col.batches) >= 2, timeout=5)
    assert 2 <= len(col.batches) <= 5  # about one per max_wait (1.5 s), not one per save
    time.sleep(0.6)
    assert (ms / "01.md").read_text() == f"save {n - 1}\n"


def test_watched_folder_deleted_then_back(watched, tmp_path):
    ms, col, w = watched
    moved = tmp_path / "moved-away"
    os.rename(ms, moved)
    assert col.wait(lambda: col.errors, timeout=5)
    assert "is gone" in col.errors[0] and str(ms) in col.errors[0]
    time.sleep(0.8)
    assert col.deleted() == []  # moving the folder away drops nothing from the training set
    os.rename(moved, ms)
    assert col.wait(lambda: any(b.rescan for b in col.batches), timeout=5)
    assert "01.md" in col.changed()
    (ms / "03.md").write_text("watched again\n")
    assert col.wait(lambda: "03.md" in col.changed())
    shutil.rmtree(ms)
    assert col.wait(lambda: len(col.errors) >= 2, timeout=5)


@pytest.mark.slow
def test_file_saved_every_100ms_for_a_full_minute(tmp_path):
    ms = tmp_path / "manuscript"
    ms.mkdir()
    col = Collector()
    w = Watcher(
        [WatchRoot("manuscript", ms, ["**/*.md"], [])],
        col.on_batch,
        col.on_error,
        quiet_seconds=2.0,
        project_root=tmp_path,
    ).start()  # the default quiet period; max wait 20 s
    try:
        end, n = time.monotonic() + 60, 0
        while time.monotonic() < end:
            (ms / "ch.md").write_text(f"save {n}\n")
            n += 1
            time.sleep(0.1)
        time.sleep(3)  # past the quiet period after the last save
        assert n >= 500
        assert 3 <= len(col.batches) <= 5, len(col.batches)  # every ~20 s while saving, then once at the end
        assert col.errors == []
    finally:
        w.stop()
