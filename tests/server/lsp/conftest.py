"""Fixtures for the language-server tests.

The daemon (`penwright serve`, builtin:tiny) runs once per session on a private
copy of examples/novel, on a free 127.0.0.1 port; each test starts its own
language server process (pytest-lsp) pointed at that project.
"""

from __future__ import annotations

import pytest
from lsp_support import Daemon, copy_project, free_port


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    """A real daemon with builtin:tiny on a copy of examples/novel, for the whole session."""
    port = free_port()
    root = copy_project(tmp_path_factory.mktemp("lsp-daemon") / "novel", port)
    d = Daemon(root, port).start()
    yield d
    d.stop()
