"""`PenwrightLanguageServer`: the state every feature shares, and `build_server()` that wires the features.

Features live one per file (inline.py, lore.py, commands.py, progress.py,
config.py); each registers its handlers on the server it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from penwright.server.lsp.daemon import DaemonClient
from penwright.server.lsp.settings import LspSettings, parse_settings
from penwright.server.lsp.text import uri_to_path

log = logging.getLogger(__name__)

SERVER_NAME = "penwright"
SERVER_VERSION = "0.1.0"


@dataclass
class Shown:
    """An inline suggestion shown in a document: `text` was proposed right after `prefix_end`."""

    id: str
    uri: str
    prefix_end: str  # the last characters before the cursor when it was proposed
    text: str
    adapter: str | None
    lore: list[dict]
    chapter: int | None
    resolved: bool = False
    full: str = ""  # the whole suggestion, when `text` is what is left of it after the author typed (or took) a part


@dataclass
class LoreNames:
    names: dict[str, dict] = field(default_factory=dict)  # name or alias -> entry summary
    fetched_at: float = 0.0


class PenwrightLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings = LspSettings()
        self.root: Path | None = None
        self.daemon: DaemonClient | None = None
        self.shown: OrderedDict[str, Shown] = OrderedDict()  # by uri, most recent last; small
        self.lore_names = LoreNames()
        self.live_adapter: str | None = None
        self.background: set[asyncio.Task] = set()
        self.position_encoding = "utf-16"
        self.pending_problems: list[str] = []  # settings problems, shown after `initialized`
        self.bridge = None  # progress.Bridge, following the daemon's events
        self.bridge_task: asyncio.Task | None = None

    # --- settings and project -------------------------------------------------
    def apply_settings(self, raw) -> list[str]:
        new, problems = parse_settings(raw, self.settings)
        changed = new != self.settings
        self.settings = new
        if changed or self.daemon is None:
            self._reset_daemon()
        logging.getLogger("penwright").setLevel(new.log_level.upper())
        return problems

    def set_root_from(self, folders: list[str]) -> None:
        """The project: the `project` setting, else the first workspace folder holding penwright.yaml (or above)."""
        starts = (
            [Path(self.settings.project)] if self.settings.project else [p for f in folders if (p := uri_to_path(f))]
        )
        for start in starts:
            try:
                self.root = find_project_root(start)
                break
            except (LookupError, OSError) as err:
                log.debug("no project for %s: %s", start, err)
        self._reset_daemon()

    def root_for(self, uri: str) -> Path | None:
        """Lazily find the project from a document when the workspace did not say."""
        if self.root is None and (path := uri_to_path(uri)) is not None:
            self.set_root_from([path.parent.as_uri()])
        return self.root

    def _reset_daemon(self) -> None:
        old = self.daemon
        self.daemon = DaemonClient(
            self.root, self.settings.daemon_url, self.settings.auto_start_daemon, self.settings.request_timeout_seconds
        )
        if old is not None:
            self.spawn(old.aclose())

    # --- small utilities ----------------------------------------------------
    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def remember(self, shown: Shown, keep: int = 32) -> None:
        self.shown.pop(shown.uri, None)
        self.shown[shown.uri] = shown
        while len(self.shown) > keep:
            self.shown.popitem(last=False)

    def tell(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))


def find_project_root(start: Path) -> Path:
    """Like penwright.project.find_project_root, without importing every component's settings schema."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / "penwright.yaml").is_file():
            return folder
    raise LookupError(f"no penwright.yaml in {start} or above")


def build_server() -> PenwrightLanguageServer:
    from penwright.server.lsp import commands, config, inline, lore, progress

    ls = PenwrightLanguageServer()
    for feature in (config, inline, lore, commands, progress):
        feature.register(ls)
    return ls
