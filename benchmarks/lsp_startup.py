"""How fast `penwright lsp` answers `initialize`: spawn -> InitializeResult, over N runs.

    .venv/bin/python benchmarks/lsp_startup.py [runs]

Prints the median and worst spawn-to-answer time, and the import time of the
server module alone, side by side with a bare `python -c pass` start.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lsprotocol import types
from pytest_lsp import ClientServerConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "novel"


async def once() -> float:
    t0 = time.perf_counter()
    client = await ClientServerConfig(server_command=[sys.executable, "-m", "penwright", "lsp"]).start()
    params = types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        root_uri=EXAMPLE.as_uri(),
        initialization_options={"autoStartDaemon": False, "daemonUrl": "http://127.0.0.1:9"},
    )
    await client.initialize_session(params)
    took = time.perf_counter() - t0
    await client.shutdown_session()
    await client.stop()
    return took


def timed(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main(runs: int) -> None:
    bare = statistics.median(timed("pass") for _ in range(runs))
    imports = statistics.median(
        timed("from penwright.server.lsp.server import build_server; build_server()") for _ in range(runs)
    )
    spawn = [asyncio.run(once()) for _ in range(runs)]
    print(f"runs={runs}")
    print(f"python -c pass              median {bare:.3f}s")
    print(f"import + build the server   median {imports:.3f}s")
    print(f"spawn -> initialize answer  median {statistics.median(spawn):.3f}s  worst {max(spawn):.3f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
