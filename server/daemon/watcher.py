"""Watching the manuscript and lore folders (watchdog), with debounce.

Editors save in many ways: write in place, write a temp file and rename it over
the original, delete and recreate. We therefore never trust one event's kind:
every touched path is remembered, and when the folders have been quiet for
`quiet_seconds` (or changes have kept coming for `max_wait_s`, so a file saved
every 100 ms is still picked up) we look at the file system and report it as changed
(it exists) or deleted (it does not). Swap, backup and lock files are ignored.

A watched folder that disappears (deleted, renamed) is reported once through
`on_error`; its files are NOT reported as deleted (nothing the author wrote is
dropped from the training set because a folder was moved), and watching resumes
with a full rescan when the folder is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from penwright.trainer.curate.sources import FileFilter

log = logging.getLogger(__name__)

# Editor droppings: vim (.swp, 4913, ~), emacs (.#x, #x#), Word (~$x), LibreOffice (.~lock.x#), Chrome (.crswap)...
SWAP_SUFFIXES = (".swp", ".swo", ".swx", ".swpx", ".tmp", ".temp", ".bak", ".part", ".crswap", ".orig", "~")
SWAP_PREFIXES = (".#", "~$", ".~lock")
SWAP_NAMES = {"4913", ".DS_Store", "Thumbs.db", "desktop.ini"}


def is_editor_junk(name: str) -> bool:
    return (
        name in SWAP_NAMES
        or name.startswith(SWAP_PREFIXES)
        or name.endswith(SWAP_SUFFIXES)
        or (name.startswith("#") and name.endswith("#"))
    )


@dataclass
class WatchRoot:
    kind: str  # "manuscript" or "lore"
    path: Path
    include: list[str] = field(default_factory=lambda: ["**/*"])
    exclude: list[str] = field(default_factory=list)


@dataclass
class Batch:
    kind: str
    changed: list[Path]
    deleted: list[Path]
    rescan: bool = False


@dataclass
class _Pending:
    root: WatchRoot
    first: float
    last: float


class Watcher:
    """watchdog observer + debouncer thread. `on_batch(Batch)` runs on the debouncer thread."""

    def __init__(
        self,
        roots: list[WatchRoot],
        on_batch: Callable[[Batch], None],
        on_error: Callable[[str], None] = lambda msg: log.warning(msg),
        quiet_seconds: float = 2.0,
        max_wait_s: float | None = None,
        ignore_file: Path | None = None,
        project_root: Path | None = None,
    ):
        self.roots = [WatchRoot(r.kind, Path(r.path).resolve(), r.include, r.exclude) for r in roots]
        self.on_batch, self.on_error = on_batch, on_error
        self.quiet = quiet_seconds
        self.max_wait = max_wait_s if max_wait_s is not None else max(10 * quiet_seconds, 5.0)
        self.ignore_file, self.project_root = ignore_file, (project_root or Path.cwd()).resolve()
        # the manuscript's files are curation's (its matcher, its ignore file); lore is every visible file
        self._filters = {
            r.path: FileFilter(r.include, r.exclude, ignore_file if r.kind == "manuscript" else None)
            for r in self.roots
        }
        self._pending: dict[Path, _Pending] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watches: dict[Path, object] = {}
        self._missing: set[Path] = set()
        self._observer = None
        self._thread: threading.Thread | None = None
        self.events_seen = 0
        self.batches = 0

    # -- filtering ---------------------------------------------------------
    def _root_for(self, path: Path) -> WatchRoot | None:
        for root in self.roots:
            if path == root.path or root.path in path.parents:
                return root
        return None

    def wanted(self, path: Path) -> WatchRoot | None:
        """The root `path` belongs to, when curation (or the lore index) would read it; else None."""
        root = self._root_for(path)
        if root is None or path == root.path or is_editor_junk(path.name):
            return None
        return root if self._filters[root.path].wanted(path.relative_to(root.path).as_posix()) else None

    # -- events in -----------------------------------------------------------
    def touch(self, path: Path | str) -> None:
        """Note that `path` may have changed (called from watchdog's thread, or directly)."""
        path = Path(path)
        if not path.is_absolute():
            path = path.resolve()
        self.events_seen += 1
        root = self.wanted(path)
        if root is None:
            return
        now = time.monotonic()
        with self._cond:
            p = self._pending.get(path)
            if p is None:
                self._pending[path] = _Pending(root, now, now)
            else:
                p.last = now
            self._cond.notify()

    def _handler(self):
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # created/modified/moved/deleted/closed
                if event.event_type in ("opened", "closed_no_write"):
                    return
                if event.is_directory:
                    if event.event_type in ("moved", "created"):
                        watcher._touch_tree(Path(getattr(event, "dest_path", "") or event.src_path))
                    return
                watcher.touch(event.src_path)
                if getattr(event, "dest_path", ""):
                    watcher.touch(event.dest_path)

        return Handler()

    def _touch_tree(self, folder: Path) -> None:
        if folder.is_dir():
            for p in folder.rglob("*"):
                if p.is_file():
                    self.touch(p)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Watcher:
        from watchdog.observers import Observer

        self._observer = Observer(timeout=0.2)
        self._handler_obj = self._handler()
        for root in self.roots:
            self._schedule(root.path)
        self._observer.start()
        self._thread = threading.Thread(target=self._loop, name="penwright-debounce", daemon=True)
        self._thread.start()
        return self

    def _schedule(self, folder: Path) -> bool:
        if not folder.is_dir():
            self._report_missing(folder)
            return False
        try:
            self._watches[folder] = self._observer.schedule(self._handler_obj, str(folder), recursive=True)
        except OSError as err:
            self.on_error(f"Cannot watch {folder}: {err}. Changes there are picked up on the next restart.")
            return False
        return True

    def _report_missing(self, folder: Path) -> None:
        if folder not in self._missing:
            self._missing.add(folder)
            self.on_error(
                f"The watched folder {folder} is gone (deleted or renamed). The training set and the live adapter "
                "are kept as they were; watching resumes when the folder is back (or fix the folders in "
                "penwright.yaml)."
            )

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- the debouncer -------------------------------------------------------
    def _loop(self) -> None:
        next_health = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_health:
                self._check_roots()
                next_health = now + 1.0
            due = self._take_due(now)
            if due:
                self._flush(due)
                continue
            with self._cond:
                self._cond.wait(timeout=self._wait_time())

    def _wait_time(self) -> float:
        with self._cond:
            if not self._pending:
                return 1.0
            last = max(p.last for p in self._pending.values())
            first = min(p.first for p in self._pending.values())
        return max(0.01, min(1.0, min(last + self.quiet, first + self.max_wait) - time.monotonic()))

    def _take_due(self, now: float) -> dict[Path, WatchRoot]:
        """Everything at once, when the folders have been quiet (a burst is one batch) or waited too long."""
        with self._cond:
            if not self._pending:
                return {}
            last = max(p.last for p in self._pending.values())
            first = min(p.first for p in self._pending.values())
            if now - last < self.quiet and now - first < self.max_wait:
                return {}
            due = {path: p.root for path, p in self._pending.items()}
            self._pending.clear()
        return due

    def _flush(self, due: dict[Path, WatchRoot]) -> None:
        by_kind: dict[str, Batch] = {}
        for path, root in sorted(due.items()):
            if root.path in self._missing or not root.path.is_dir():
                continue  # the folder is gone: keep its files' chunks, report nothing as deleted
            batch = by_kind.setdefault(root.kind, Batch(root.kind, [], []))
            (batch.changed if path.is_file() else batch.deleted).append(path)
        for batch in by_kind.values():
            self._deliver(batch)

    def _deliver(self, batch: Batch) -> None:
        self.batches += 1
        try:
            self.on_batch(batch)
        except Exception as err:  # the watcher must outlive one bad batch
            log.exception("handling a file change failed")
            self.on_error(
                f"Handling changes to {', '.join(p.name for p in batch.changed + batch.deleted)} failed: {err}"
            )

    def _check_roots(self) -> None:
        for root in self.roots:
            present = root.path.is_dir()
            if not present and root.path not in self._missing:
                self._report_missing(root.path)
                self._unschedule(root.path)
            elif present and root.path in self._missing:
                if self._schedule(root.path):
                    self._missing.discard(root.path)
                    files = [p for p in sorted(root.path.rglob("*")) if p.is_file() and self.wanted(p)]
                    self._deliver(Batch(root.kind, files, [], rescan=True))

    def _unschedule(self, folder: Path) -> None:
        watch = self._watches.pop(folder, None)
        if watch is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass
