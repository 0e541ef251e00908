"""Bad input, auth, disconnects and hot-swap under load, against a real uvicorn.

Clear errors, no crash, still serving.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import openai
import pytest
from serving_fixtures import LiveServer, served_stack

from penwright.errors import ServeError
from penwright.server.app import create_app
from penwright.server.context import Services
from penwright.server.settings import ServerSettings


@pytest.fixture(scope="module")
def stack(tiny_model_dir, tmp_path_factory):
    with served_stack(tiny_model_dir, tmp_path_factory) as stack:
        yield stack


def post(server, path, body=None, content=None, **kw):
    return httpx.post(server.url + path, json=body, content=content, timeout=60, **kw)


def assert_openai_error(resp, status, code=None, param=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code, err
    if param:
        assert err["param"] == param, err
    return err


def test_malformed_json(stack):
    _, server = stack
    r = post(
        server,
        "/v1/completions",
        content=b'{"model": "penwright", "prompt": ',
        headers={"content-type": "application/json"},
    )
    err = assert_openai_error(r, 400, "invalid_json")
    assert "JSON" in err["message"]
    r = post(server, "/v1/chat/completions", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert_openai_error(r, 400)


@pytest.mark.parametrize(
    "body,param",
    [
        ({"prompt": "x", "max_tokens": "lots"}, "max_tokens"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": {"text": "x"}}, "prompt"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x", "max_tokens": -5}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "temperature": 9}, "temperature"),
        ({"prompt": "x", "n": 3}, "n"),
        ({"prompt": "x", "penwright": {"stop_at": "chapter"}}, "penwright.stop_at"),
    ],
)
def test_wrong_types_and_values(stack, body, param):
    _, server = stack
    err = assert_openai_error(post(server, "/v1/completions", {"model": "penwright", **body}), 400)
    assert err["param"] == param and param.split(".")[-1] in err["message"]


def test_chat_needs_messages(stack):
    _, server = stack
    assert_openai_error(
        post(server, "/v1/chat/completions", {"model": "penwright", "messages": "hello"}), 400, param="messages"
    )
    assert_openai_error(
        post(server, "/v1/chat/completions", {"model": "penwright", "messages": []}), 400, param="messages"
    )
    assert_openai_error(
        post(server, "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}),
        400,
        param="messages.0.role",
    )


def test_huge_max_tokens_is_a_clear_400(stack):
    services, server = stack
    err = assert_openai_error(
        post(server, "/v1/completions", {"prompt": "x", "max_tokens": 10**9}), 400, "invalid_value", "max_tokens"
    )
    assert str(services.engine.context_length) in err["message"]


def test_prompt_over_context_is_truncated_gracefully(stack):
    services, server = stack
    ctx = services.engine.context_length
    long_prompt = "The lamp was lit. " * ctx
    r = post(server, "/v1/completions", {"prompt": long_prompt, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["prompt_tokens"] + 4 <= ctx
    assert body["usage"]["completion_tokens"] == 4
    fim = post(server, "/v1/completions", {"prompt": long_prompt, "suffix": long_prompt, "max_tokens": 4})
    assert fim.status_code == 200 and fim.json()["usage"]["prompt_tokens"] + 4 <= ctx
    chat = post(
        server, "/v1/chat/completions", {"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4}
    )
    assert chat.status_code == 200 and chat.json()["usage"]["prompt_tokens"] + 4 <= ctx


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4",
        "penwright@v99",
        "penwright@../../etc/passwd",
        "../penwright",
        "penwright@v1/../../x",
        "penwright@",
        "penwright:live:base",
    ],
)
def test_unknown_and_malicious_model_names(stack, model):
    _, server = stack
    err = assert_openai_error(
        post(server, "/v1/completions", {"model": model, "prompt": "x", "max_tokens": 2}),
        404,
        "model_not_found",
        "model",
    )
    assert "penwright:base" in err["message"]


def test_unknown_fields_are_ignored_and_logged(stack, caplog):
    _, server = stack
    with caplog.at_level(logging.INFO, logger="penwright.server.routers.openai"):
        r = post(
            server, "/v1/completions", {"prompt": "x", "max_tokens": 2, "logit_bias": {}, "frobnicate": 1, "user": "u"}
        )
    assert r.status_code == 200
    assert "frobnicate" in caplog.text and "logit_bias" in caplog.text


def test_unknown_route_and_method_are_openai_shaped(stack):
    _, server = stack
    assert_openai_error(httpx.get(server.url + "/v1/nothing"), 404)
    assert_openai_error(httpx.get(server.url + "/v1/completions"), 405)


def test_disconnect_mid_stream_stops_generation(stack):
    services, server = stack
    before = services.engine.stats.cancelled
    with httpx.Client(timeout=60) as http:
        with http.stream(
            "POST",
            server.url + "/v1/completions",
            json={"prompt": "Maren", "max_tokens": 1900, "stream": True, "model": "penwright:base", "temperature": 0},
        ) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert '"text"' in first
    deadline = time.time() + 15
    while services.engine.stats.cancelled == before and time.time() < deadline:
        time.sleep(0.05)
    assert services.engine.stats.cancelled == before + 1
    assert services.engine.status()["active"] == 0
    ok = post(server, "/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert ok.status_code == 200  # still serving


def test_disconnect_while_waiting_non_stream(stack):
    services, server = stack
    before = services.engine.stats.cancelled
    with pytest.raises(httpx.ReadTimeout):  # the client gives up before the answer
        httpx.post(
            server.url + "/v1/completions",
            json={"prompt": "Maren", "max_tokens": 1900, "model": "penwright:base", "temperature": 0},
            timeout=httpx.Timeout(60, read=0.5),
        )
    deadline = time.time() + 15
    while services.engine.stats.cancelled == before and time.time() < deadline:
        time.sleep(0.05)
    assert services.engine.stats.cancelled == before + 1


def test_hot_swap_while_clients_stream(stack):
    """Promotions while 4 clients stream: no failed request, every stream on one adapter from start to end."""
    services, server = stack
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    failures, adapters = [], []

    def stream_once():
        try:
            raw = client.completions.with_raw_response.create(
                model="penwright", prompt="Maren", max_tokens=60, temperature=0, stream=True
            )
            chunks = list(raw.parse())
            assert chunks[-1].choices[0].finish_reason == "length"
            assert chunks[-1].model_extra["penwright"]["adapter"] == raw.headers["x-penwright-adapter"]
            adapters.append(raw.headers["x-penwright-adapter"])
        except Exception as err:
            failures.append(err)

    def clients():
        for _ in range(3):
            stream_once()

    threads = [threading.Thread(target=clients) for _ in range(4)]
    for t in threads:
        t.start()
    versions = [v.version for v in services.registry.list()]
    for i in range(4):
        time.sleep(0.1)
        services.registry.promote(versions[(i + 1) % 2])
        services.sync_live()
    for t in threads:
        t.join(300)
    assert not failures
    assert len(adapters) == 12 and set(adapters) <= {"penwright@v1", "penwright@v2"}
    assert len(services.engine.stats.swaps) >= 4
    services.registry.promote(versions[0])
    services.sync_live()
    assert services.engine.live == "v1"


def test_auth_on(tiny_model_dir, stack):
    services, _ = stack
    secured = Services(settings=ServerSettings(api_key="s3cret"), engine=services.engine, registry=services.registry)
    with LiveServer(create_app(secured)) as server:
        ok = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert ok.completions.create(model="penwright", prompt="x", max_tokens=2).choices[0].finish_reason == "length"
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.models.list()
        assert info.value.body["code"] == "invalid_api_key"
        assert httpx.post(server.url + "/v1/completions", json={"prompt": "x"}).status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200  # liveness needs no key
        assert httpx.get(server.url + "/api/status").status_code == 401


def test_auth_off_and_cors_off_by_default(stack):
    _, server = stack
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_refuses_non_loopback_without_key(stack):
    services, _ = stack
    with pytest.raises(ServeError, match="api_key"):
        create_app(Services(settings=ServerSettings(host="0.0.0.0"), engine=services.engine))
    create_app(Services(settings=ServerSettings(host="0.0.0.0", api_key="k"), engine=services.engine))
    create_app(Services(settings=ServerSettings(host="::1"), engine=services.engine))
