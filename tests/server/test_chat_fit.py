"""Chat fitting (issue 14, item 7): linear, and stopped when its client leaves or its request is cancelled.

It used to run to the end after the client had gone: a 2,000-message chat cost ~108 s of CPU after the client
left at 3 s, and a 5,000-message one kept the daemon busy for 9+ minutes. Real tiny model, real uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import httpx
import pytest
from serving_fixtures import LiveServer, tiny_engine

from penwright.server.app import create_app
from penwright.server.context import Services
from penwright.server.services import chat_fit
from penwright.server.settings import ServerSettings

BIG_BODY = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    engine = tiny_engine(tiny_model_dir)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def server(engine):
    """A bare app on the tiny engine whose body limit lets a chat of tens of megabytes through."""
    with LiveServer(create_app(Services(settings=ServerSettings(max_body_bytes=BIG_BODY), engine=engine))) as server:
        yield server


def chat(turns: int, words: int = 6) -> list[dict]:
    text = " ".join(["the lamp was lit at dusk"] * max(1, words // 6))
    return [
        {"role": "system", "content": "Be brief."},
        *({"role": "user" if i % 2 else "assistant", "content": f"line {i}: {text}"} for i in range(turns)),
    ]


def test_a_long_chat_keeps_its_system_prompt_and_newest_turns_and_fills_the_budget(engine):
    messages = chat(5000)
    prompt = chat_fit.fit_chat(messages, 300, engine.chat_prompt, engine.count_tokens)
    tokens = engine.count_tokens(prompt)
    assert 240 <= tokens <= 300, tokens  # within the budget, and not emptied (two turns are ~20 tokens)
    assert "Be brief." in prompt and "line 4999" in prompt and "line 0:" not in prompt
    short = chat(3)
    assert chat_fit.fit_chat(short, 300, engine.chat_prompt, engine.count_tokens) == engine.chat_prompt(short)


def test_one_message_larger_than_the_budget_is_left_to_the_engine_to_trim(engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "word " * 100_000}]
    prompt = chat_fit.fit_chat(messages, 300, engine.chat_prompt, engine.count_tokens)
    assert prompt == engine.chat_prompt(messages)


def test_fitting_stops_between_messages_once_told_to(engine):
    stop, counted = threading.Event(), []

    def count(text: str) -> int:  # the real tokenizer; the stop is asked for after 100 messages
        counted.append(text)
        if len(counted) == 100:
            stop.set()
        return engine.count_tokens(text)

    messages = chat(5000)
    with pytest.raises(chat_fit.Stopped) as err:
        chat_fit.fit_chat(messages, 300, engine.chat_prompt, count, stop)
    assert (err.value.done, err.value.total, len(counted)) == (100, len(messages), 100)


def test_a_cancelled_request_stops_its_fitting(engine):
    """The request's task is cancelled (the server shutting down, say): the worker thread stops too."""
    counted = []

    def count(text: str) -> int:
        counted.append(text)
        return engine.count_tokens(text)

    messages = chat(50_000)

    async def cancel_early():
        task = asyncio.ensure_future(chat_fit.fit_while_connected(messages, 300, engine.chat_prompt, count))
        while len(counted) < 100:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_early())
    assert settled(counted) < len(messages)


def settled(items: list) -> int:
    """len(items) once it stops growing (the worker has stopped, or finished)."""
    before = -1
    while len(items) != before:
        before = len(items)
        time.sleep(0.5)
    return before


def test_a_client_that_leaves_frees_the_daemon(server, caplog, capsys):
    """A chat of ~24 MB is sent and the client hangs up while it is being fitted: the fitting stops before its end,
    and the daemon answers others (during the fitting and after)."""
    caplog.set_level(logging.DEBUG, logger=chat_fit.__name__)
    messages = chat(6000, words=700)
    body = httpx.Request(
        "POST", server.url + "/v1/chat/completions", json={"model": "penwright:base", "messages": messages}
    )
    raw = b"".join(
        [f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()]
        + [f"{k}: {v}\r\n".encode() for k, v in body.headers.items() if k.lower() not in ("host",)]
        + [b"\r\n", body.read()]
    )
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(raw)
    wait_for_log(caplog, "fitting a chat of")
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200  # while the big chat is fitted
    left = time.time()
    client.close()  # the client leaves
    record = wait_for_log(caplog, "the client left")
    done, total = record.args
    with capsys.disabled():
        print(f"\nchat fitting: stopped {record.created - left:.2f} s after the client left, {done} of {total} counted")
    assert total == len(messages) and done < total, record.getMessage()
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "penwright:base", "messages": chat(3), "max_tokens": 2},
        timeout=60,
    )
    assert r.status_code == 200, r.text


def wait_for_log(caplog, text: str, timeout: float = 300) -> logging.LogRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((r for r in caplog.records if text in r.getMessage()), None)
        if found is not None:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no log line with {text!r} in {timeout}s: {caplog.text[-2000:]}")
