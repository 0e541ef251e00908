"""Lifecycle and settings: `initialize` (initializationOptions), `initialized`, didChangeConfiguration, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os

from lsprotocol import types

log = logging.getLogger(__name__)


def register(ls) -> None:
    @ls.feature(types.INITIALIZE)
    def initialize(ls, params: types.InitializeParams) -> None:
        problems = ls.apply_settings(params.initialization_options)
        encoding = ls.workspace.position_encoding or "utf-16"
        ls.position_encoding = getattr(encoding, "value", encoding)  # "utf-8" | "utf-16" | "utf-32"
        folders = [f.uri for f in params.workspace_folders or []]
        if params.root_uri:
            folders.append(params.root_uri)
        ls.set_root_from(folders)
        ls.pending_problems = problems  # shown once the client can take messages (after `initialized`)
        if params.process_id:
            ls.spawn(exit_with_parent(params.process_id))

    @ls.feature(types.INITIALIZED)
    def initialized(ls, params: types.InitializedParams) -> None:
        for problem in ls.pending_problems:
            ls.tell(f"Penwright settings: {problem}", types.MessageType.Warning)
        ls.pending_problems = []
        from penwright.server.lsp.progress import start_event_bridge

        start_event_bridge(ls)

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls, params: types.DidChangeConfigurationParams) -> None:
        old_project, old_url = ls.settings.project, ls.settings.daemon_url
        for problem in ls.apply_settings(params.settings):
            ls.tell(f"Penwright settings: {problem}", types.MessageType.Warning)
        if ls.settings.project != old_project:
            ls.set_root_from([])
        if (ls.settings.project, ls.settings.daemon_url) != (old_project, old_url):
            from penwright.server.lsp.progress import start_event_bridge

            start_event_bridge(ls)  # follow the new daemon's events
        ls.shown.clear()  # cached suggestions may come from another model now

    @ls.feature(types.SHUTDOWN)
    async def shutdown(ls, params) -> None:
        for task in list(ls.background):
            task.cancel()
        if ls.daemon is not None:
            await ls.daemon.aclose()


async def exit_with_parent(pid: int, every_s: float = 2.0) -> None:
    """LSP: the server exits when the editor that started it is gone (it may die without `exit`)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("the editor (pid %d) is gone; exiting", pid)
            os._exit(0)
        except PermissionError:  # exists, owned by someone else
            pass
