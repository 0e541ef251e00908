"""The language server starts fast and stays thin: no model libraries on its import path."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from lsp_support import EXAMPLE, stop_client

HEAVY = ("torch", "transformers", "peft", "chromadb", "sentence_transformers", "numpy", "datasets")


def test_import_path_has_no_model_libraries():
    code = (
        "import sys, json\n"
        "from penwright.server.lsp.server import build_server\n"
        "build_server()\n"
        "import penwright.cli.lsp, penwright.cli.continue_config\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert "pygls" in loaded and "lsprotocol" in loaded  # the probe really imported the server
    assert not loaded & set(HEAVY), f"heavy imports on the LSP path: {sorted(loaded & set(HEAVY))}"


async def test_initialize_answers_fast_and_advertises_every_feature():
    from lsp_support import LSP_CMD, init_params
    from pytest_lsp import ClientServerConfig

    t0 = time.perf_counter()
    client = await ClientServerConfig(server_command=LSP_CMD).start()
    try:
        result = await client.initialize_session(
            init_params(EXAMPLE, autoStartDaemon=False, daemonUrl="http://127.0.0.1:9")
        )
        took = time.perf_counter() - t0
        caps = result.capabilities
        assert result.server_info.name == "penwright"
        assert caps.inline_completion_provider is not None
        assert caps.hover_provider and caps.definition_provider and caps.completion_provider is not None
        commands = set(caps.execute_command_provider.commands)
        assert {
            "penwright.retrainNow",
            "penwright.cancelTraining",
            "penwright.status",
            "penwright.rollback",
            "penwright.selectAdapter",
            "penwright.acceptCompletion",
        } <= commands
        # spawn -> answer, Python start-up and imports included: ~0.7 s on an idle machine (figures:
        # benchmarks/lsp_startup.py). The bound only catches a heavy import (torch alone takes longer) on a
        # 2-core machine that may be shared with other builds; the import test above is the exact check.
        assert took < 6.0, f"initialize answered {took:.2f}s after spawning the server"
    finally:
        await stop_client(client)
