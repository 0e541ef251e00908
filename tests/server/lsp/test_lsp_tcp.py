"""`penwright lsp --tcp`: the same server over a socket, for editors that connect instead of spawning."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from lsp_support import EXAMPLE, free_port


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _read(sock: socket.socket) -> dict:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += sock.recv(4096)
    return json.loads(rest[:length])


def test_tcp_mode_answers_initialize():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "penwright", "lsp", "--tcp", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "no TCP listener"
                time.sleep(0.1)
        with sock:
            sock.sendall(
                _frame(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "processId": None,
                            "rootUri": EXAMPLE.as_uri(),
                            "capabilities": {},
                            "initializationOptions": {"autoStartDaemon": False, "daemonUrl": "http://127.0.0.1:9"},
                        },
                    }
                )
            )
            reply = _read(sock)
        assert reply["id"] == 1 and reply["result"]["serverInfo"]["name"] == "penwright"
        assert "inlineCompletionProvider" in reply["result"]["capabilities"]
    finally:
        proc.terminate()
        proc.wait(10)
