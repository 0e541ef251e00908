"""What the language server adds to a completion: direct `POST /v1/completions` vs `textDocument/inlineCompletion`.

    .venv/bin/python benchmarks/lsp_inline_latency.py [runs]

Starts a daemon (builtin:tiny) on a copy of examples/novel, then times, side by side, the same request
sent straight to the daemon and through `penwright lsp`, plus a suggestion reused while typing (no daemon call).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from lsprotocol import types

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server" / "lsp"))
from lsp_support import Daemon, copy_project, end_position, free_port, inline_params, lsp_session, open_doc  # noqa: E402

TEXT = "# Chapter One\n\nMaren Vell climbed the hundred and twelve steps with the oil can, and at the top she"


async def measure(root: Path, url: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct HTTP": [], "through the LSP": [], "typed into a shown suggestion": []}
    body = {
        "model": "penwright",
        "prompt": TEXT,
        "suffix": "",
        "max_tokens": 40,
        "temperature": 0.8,
        "penwright": {"chapter": 1, "stop_at": "paragraph", "lore": True},
    }
    async with httpx.AsyncClient(timeout=120) as http, lsp_session(root, paragraphTokens=40, debounceMs=0) as client:
        uri = open_doc(client, root / "manuscript" / "bench.md", TEXT)
        for i in range(runs + 1):  # the first of each is a warm-up
            t0 = time.perf_counter()
            (await http.post(f"{url}/v1/completions", json=body)).raise_for_status()
            direct = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = await client.text_document_inline_completion_async(inline_params(uri, end_position(TEXT)))
            via = time.perf_counter() - t0
            if i:
                out["direct HTTP"].append(direct)
                out["through the LSP"].append(via)
            if result.items and len(result.items[0].insert_text) > 1 and i:
                typed = result.items[0].insert_text[:1]
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2 * i + 2),
                        content_changes=[types.TextDocumentContentChangeWholeDocument(text=TEXT + typed)],
                    )
                )
                t0 = time.perf_counter()
                await client.text_document_inline_completion_async(
                    inline_params(uri, end_position(TEXT + typed), invoked=False)
                )
                out["typed into a shown suggestion"].append(time.perf_counter() - t0)
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2 * i + 3),
                        content_changes=[types.TextDocumentContentChangeWholeDocument(text=TEXT)],
                    )
                )
    return out


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        daemon = Daemon(copy_project(Path(tmp) / "novel", port), port).start()
        try:
            figures = asyncio.run(measure(daemon.root, daemon.url, runs))
        finally:
            daemon.stop()
    base = statistics.median(figures["direct HTTP"])
    print(f"runs={runs}, 40 tokens, builtin:tiny, lore on")
    for name, values in figures.items():
        med = statistics.median(values) if values else float("nan")
        print(f"{name:32s} median {1000 * med:7.1f} ms   x{med / base:5.2f} of direct")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
