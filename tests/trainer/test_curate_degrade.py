"""Degraders: the offline rules, and a chat degrader against a real local OpenAI-shaped HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from penwright.trainer.curate.degrade import ChatDegrader, RuleDegrader, upstream_complete

PASSAGE = (
    "The tall, grey tower stood silently above the restless sea. Maren climbed the narrow stair slowly, "
    'and the old brass lamp burned brightly in the cold dark. "Tobias!" she exclaimed; "you\'re late," she told Tobias.'
)


def test_rules():
    d = RuleDegrader()
    dropped = d.degrade("info_dropout", PASSAGE)
    for word in ("tall", "grey", "silently", "restless", "narrow", "slowly", "old", "brightly", "cold"):
        assert f" {word}" not in dropped, word
    assert "tower stood above the sea" in dropped and "Maren climbed the stair" in dropped
    neutral = d.degrade("neutral", PASSAGE)
    assert "said" in neutral and "exclaimed" not in neutral and "you are late" in neutral and "!" not in neutral
    abstract = d.degrade("abstract", PASSAGE)
    assert "[NAME1]" in abstract and "[THING1]" in abstract and "tower" not in abstract and "Tobias" not in abstract
    assert d.degrade("info_dropout", "He went to the shop.") == "", "nothing to drop: no pair"


class _Upstream(BaseHTTPRequestHandler):
    replies: list[str] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        reply = type(self).replies.pop(0)
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def upstream():
    server = HTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_chat_degrader_uses_upstream_and_falls_back_on_refusal(upstream):
    _Upstream.replies = [
        "A tower stood above the sea. Maren climbed the stair.",
        "I'm sorry, but I can't help with that.",
    ]
    _Upstream.seen = []
    d = ChatDegrader(upstream_complete(upstream, "some-model", api_key="k"), name="upstream")
    assert d.degrade("neutral", PASSAGE) == "A tower stood above the sea. Maren climbed the stair."
    assert _Upstream.seen[0]["model"] == "some-model" and _Upstream.seen[0]["messages"][1]["content"] == PASSAGE
    assert d.degrade("neutral", PASSAGE) == RuleDegrader().degrade("neutral", PASSAGE), (
        "a refusal falls back to the rules"
    )
    dead = ChatDegrader(upstream_complete("http://127.0.0.1:9/v1", "m", timeout=2), name="upstream")
    assert dead.degrade("info_dropout", PASSAGE) == RuleDegrader().degrade("info_dropout", PASSAGE)
