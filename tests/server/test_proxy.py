"""Proxy mode against a real OpenAI-compatible upstream on 127.0.0.1 with scripted answers (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import json
import os
import stat

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from serving_fixtures import LiveServer, lore_index

from penwright.server.app import create_app
from penwright.server.context import Services
from penwright.server.proxy import Upstream
from penwright.server.settings import ServerSettings, UpstreamSettings
from penwright.trainer.registry import Registry


def scripted_upstream(log: list):
    """A small OpenAI-compatible server: records every request, answers by script."""
    app = FastAPI()
    state = {
        "loras": [
            {"id": 0, "path": "/models/loras/v1.gguf", "scale": 0.0},
            {"id": 1, "path": "/models/loras/v2.gguf", "scale": 0.0},
        ]
    }

    def answer(body, kind):
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        if "FAIL" in prompt:
            return JSONResponse(
                {
                    "error": {
                        "message": "prompt refused by policy",
                        "type": "invalid_request_error",
                        "param": "prompt",
                        "code": "refused",
                    }
                },
                status_code=400,
            )
        if "BOOM" in prompt:
            return JSONResponse({"error": {"message": "CUDA out of memory"}}, status_code=500)
        words = ["the", " lamp", " was", " lit", "."]
        if body.get("stream"):

            def gen():
                for i, w in enumerate(words):
                    last = i == len(words) - 1
                    choice = (
                        {"index": 0, "delta": {"content": w}, "finish_reason": "stop" if last else None}
                        if kind == "chat"
                        else {"index": 0, "text": w, "finish_reason": "stop" if last else None}
                    )
                    chunk = {"id": "u1", "object": "x", "created": 1, "model": body["model"], "choices": [choice]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(gen(), media_type="text/event-stream")
        text = "".join(words)
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if kind == "chat"
            else {"index": 0, "text": text, "finish_reason": "stop"}
        )
        return {
            "id": "u1",
            "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": 1,
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        log.append(("completions", body, request.headers.get("authorization")))
        return answer(body, "text")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        log.append(("chat", body, request.headers.get("authorization")))
        return answer(body, "chat")

    @app.post("/v1/load_lora_adapter")
    async def load_lora(request: Request):
        """vLLM's LoadLoRAAdapterRequest {lora_name, lora_path, load_inplace=False} and its answers."""
        body = await request.json()
        log.append(("load_lora_adapter", body, None))
        if not body.get("lora_name") or not body.get("lora_path"):
            return JSONResponse(
                {
                    "error": {
                        "message": "Both 'lora_name' and 'lora_path' must be provided.",
                        "type": "InvalidUserInput",
                        "code": 400,
                    }
                },
                status_code=400,
            )
        if body["lora_name"] in state.setdefault("vllm_loaded", set()) and not body.get("load_inplace"):
            return JSONResponse(
                {
                    "error": {
                        "message": f"The lora adapter '{body['lora_name']}' has already been "
                        "loaded. If you want to load the adapter in place, set 'load_inplace' to "
                        "True.",
                        "type": "InvalidUserInput",
                        "code": 400,
                    }
                },
                status_code=400,
            )
        state["vllm_loaded"].add(body["lora_name"])
        return JSONResponse(f"Success: LoRA adapter '{body['lora_name']}' added successfully.")

    @app.get("/lora-adapters")
    async def list_loras():
        return state["loras"]

    @app.post("/lora-adapters")
    async def set_loras(request: Request):
        body = await request.json()
        log.append(("lora-adapters", body, None))
        for item in body:
            state["loras"][item["id"]]["scale"] = item["scale"]
        return {"success": True}

    return app


@pytest.fixture(scope="module")
def upstream():
    log: list = []
    with LiveServer(scripted_upstream(log)) as server:
        yield server, log


@pytest.fixture()
def registry(tmp_path):
    reg = Registry(tmp_path / "penwright.db", tmp_path / "adapters")
    for i in (1, 2):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
        (src / "adapter_model.safetensors").write_bytes(b"x")
        reg.publish(src, base_model="Qwen/Qwen2.5-0.5B")
    return reg


def proxy_stack(upstream_server, registry, kind, tmp_path, lore=None, **kw):
    settings = UpstreamSettings(
        url=upstream_server.url + "/v1", kind=kind, model="qwen2.5:0.5b", api_key="up-key", **kw
    )
    services = Services(
        settings=ServerSettings(),
        registry=registry,
        lore=lore,
        upstream=Upstream(settings, export_dir=tmp_path / "exports", context_length=4096),
    )
    return services


def test_forwards_completion_with_fim_translation_and_metadata(upstream, registry, tmp_path):
    server, log = upstream
    services = proxy_stack(server, registry, "vllm", tmp_path)
    with LiveServer(create_app(services)) as pw:
        client = openai.OpenAI(base_url=pw.url + "/v1", api_key="x", max_retries=0)
        raw = client.completions.with_raw_response.create(
            model="penwright:base",
            prompt="<fim_prefix>She climbed<fim_suffix> at dusk.<fim_middle>",
            max_tokens=12,
            temperature=0.2,
            stop=["\n\n"],
            extra_body={"user": "me"},
        )
        resp = raw.parse()
    kind, body, auth = log[-1]
    assert kind == "completions" and auth == "Bearer up-key"
    assert body["model"] == "qwen2.5:0.5b"
    assert body["prompt"] == "<|fim_prefix|>She climbed<|fim_suffix|> at dusk.<|fim_middle|>"
    assert body["max_tokens"] == 12 and body["temperature"] == 0.2 and body["stop"] == ["\n\n"] and body["user"] == "me"
    assert "penwright" not in body and "suffix" not in body
    assert resp.choices[0].text == "the lamp was lit."
    assert resp.model_extra["penwright"]["adapter"] == "qwen2.5:0.5b"
    assert raw.headers["x-penwright-adapter"] == "qwen2.5:0.5b"


def test_ollama_gets_suffix_field(upstream, registry, tmp_path):
    server, log = upstream
    services = proxy_stack(server, registry, "ollama", tmp_path)
    with LiveServer(create_app(services)) as pw:
        httpx.post(
            pw.url + "/v1/completions",
            json={"model": "penwright:base", "prompt": "<|fim_prefix|>A<|fim_suffix|>B<|fim_middle|>"},
        )
    body = log[-1][1]
    assert body["prompt"] == "A" and body["suffix"] == "B"


async def test_streaming_is_relayed_chunk_by_chunk(upstream, registry, tmp_path):
    server, log = upstream
    services = proxy_stack(server, registry, "vllm", tmp_path)
    with LiveServer(create_app(services)) as pw:
        client = openai.AsyncOpenAI(base_url=pw.url + "/v1", api_key="x", max_retries=0)
        stream = await client.chat.completions.create(
            model="penwright:base", stream=True, messages=[{"role": "user", "content": "Go on"}]
        )
        chunks = [c async for c in stream]
        text_stream = await client.completions.create(model="penwright:base", prompt="Go", stream=True)
        texts = [c.choices[0].text async for c in text_stream]
    assert [c.choices[0].delta.content for c in chunks] == ["the", " lamp", " was", " lit", "."]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["penwright"]["adapter"] == "qwen2.5:0.5b"
    assert log[-2][1]["stream"] is True and log[-2][0] == "chat"
    assert texts == ["the", " lamp", " was", " lit", "."]


def test_upstream_errors_are_passed_on(upstream, registry, tmp_path):
    server, _ = upstream
    services = proxy_stack(server, registry, "vllm", tmp_path)
    with LiveServer(create_app(services)) as pw:
        client = openai.OpenAI(base_url=pw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as bad:
            client.completions.create(model="penwright:base", prompt="FAIL please")
        assert bad.value.body["code"] == "refused" and "refused by policy" in bad.value.body["message"]
        r = httpx.post(pw.url + "/v1/completions", json={"model": "penwright:base", "prompt": "BOOM"})
        assert r.status_code == 502 and "out of memory" in r.json()["error"]["message"]
        r = httpx.post(pw.url + "/v1/completions", json={"model": "penwright:base", "prompt": "x", "stream": True})
        assert r.status_code == 200 and r.text.strip().endswith("data: [DONE]")
        r = httpx.post(pw.url + "/v1/completions", json={"model": "gpt-4", "prompt": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_unreachable_upstream_is_502(registry, tmp_path):
    from serving_fixtures import free_port

    settings = UpstreamSettings(url=f"http://127.0.0.1:{free_port()}/v1", kind="openai", model="m", timeout_seconds=5)
    services = Services(
        settings=ServerSettings(), registry=registry, upstream=Upstream(settings, tmp_path, context_length=2048)
    )
    with LiveServer(create_app(services)) as pw:
        r = httpx.post(pw.url + "/v1/completions", json={"model": "penwright", "prompt": "x"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        assert httpx.get(pw.url + "/health").status_code == 200


def test_vllm_publish_on_promotion(upstream, registry, tmp_path):
    server, log = upstream
    services = proxy_stack(server, registry, "vllm", tmp_path)
    registry.promote(2)
    services.sync_live()
    kind, body, _ = log[-1]
    assert kind == "load_lora_adapter"
    assert body == {"lora_name": "penwright@v2", "lora_path": str(registry.get(2).path)}
    with LiveServer(create_app(services)) as pw:
        raw = httpx.post(pw.url + "/v1/completions", json={"model": "penwright", "prompt": "x"})
        assert raw.headers["x-penwright-adapter"] == "penwright@v2"
        assert log[-1][1]["model"] == "penwright@v2"
        assert httpx.post(pw.url + "/v1/completions", json={"model": "penwright@v2", "prompt": "x"}).status_code == 200
        r = httpx.post(pw.url + "/v1/completions", json={"model": "penwright@v1", "prompt": "x"})
        assert r.status_code == 404 and "not been published" in r.json()["error"]["message"]
        status = httpx.get(pw.url + "/api/status").json()
        assert status["mode"] == "proxy" and status["upstream"]["live_adapter"] == "penwright@v2"


def test_llamacpp_publish_sets_scales(upstream, registry, tmp_path):
    server, log = upstream
    services = proxy_stack(server, registry, "llamacpp", tmp_path)
    registry.promote(2)
    services.sync_live()
    assert log[-1] == ("lora-adapters", [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}], None)
    registry.promote(1)  # a rollback publishes the same way
    services.sync_live()
    assert log[-1] == ("lora-adapters", [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}], None)
    with LiveServer(create_app(services)) as pw:  # each request names its adapter scales too (llama-server's `lora`)
        for model, scales in (("penwright", [1.0, 0.0]), ("penwright@v2", [0.0, 1.0]), ("penwright:base", [0.0, 0.0])):
            assert httpx.post(pw.url + "/v1/completions", json={"model": model, "prompt": "x"}).status_code == 200
            assert log[-1][1]["lora"] == [{"id": 0, "scale": scales[0]}, {"id": 1, "scale": scales[1]}], model


def test_ollama_publish_runs_ollama_create(upstream, registry, tmp_path, monkeypatch):
    """No real ollama here: a fake executable on PATH records its arguments and the Modelfile."""
    server, log = upstream
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "ollama-calls.txt"
    fake = bindir / "ollama"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\ncat "$4" >> {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    services = proxy_stack(server, registry, "ollama", tmp_path)
    registry.promote(1)
    services.sync_live()
    modelfile = tmp_path / "exports" / "ollama" / "v1" / "Modelfile"
    calls = record.read_text()
    assert f"create penwright-v1 -f {modelfile}" in calls
    assert f"FROM qwen2.5:0.5b\nADAPTER {registry.get(1).path.resolve()}" in calls
    assert services.upstream.live_adapter == "penwright-v1"
    with LiveServer(create_app(services)) as pw:
        httpx.post(pw.url + "/v1/completions", json={"model": "penwright", "prompt": "x"})
    assert log[-1][1]["model"] == "penwright-v1"


def test_ollama_without_executable_shows_the_command(upstream, registry, tmp_path, monkeypatch):
    server, _ = upstream
    monkeypatch.setenv("PATH", str(tmp_path))  # no ollama anywhere
    services = proxy_stack(server, registry, "ollama", tmp_path)
    done = services.upstream.publish(registry.get(1))
    assert done["ran"] is False and done["command"][:3] == ["ollama", "create", "penwright-v1"]
    assert (tmp_path / "exports" / "ollama" / "v1" / "Modelfile").read_text().startswith("FROM qwen2.5:0.5b\n")


def test_lore_is_injected_before_forwarding(upstream, registry, tmp_path, tmp_path_factory):
    server, log = upstream
    index = lore_index(tmp_path_factory.getbasetemp())
    services = proxy_stack(server, registry, "vllm", tmp_path, lore=index)
    with LiveServer(create_app(services)) as pw:
        raw = httpx.post(
            pw.url + "/v1/completions",
            json={
                "model": "penwright:base",
                "prompt": "<|fim_prefix|>Maren Vell climbed the stair<|fim_suffix|>.<|fim_middle|>",
            },
        )
        chat = httpx.post(
            pw.url + "/v1/chat/completions",
            json={
                "model": "penwright:base",
                "messages": [{"role": "user", "content": "Write Maren Vell at the lamp."}],
            },
        )
        off = httpx.post(
            pw.url + "/v1/completions",
            json={"model": "penwright:base", "prompt": "Maren Vell", "penwright": {"lore": False}},
        )
    assert raw.status_code == 200 and chat.status_code == 200 and off.status_code == 200
    lore = raw.json()["penwright"]["lore"]
    assert any("maren" in e["id"].lower() for e in lore) and raw.json()["penwright"]["lore_tokens"] > 0
    assert "maren" in raw.headers["x-penwright-lore"].lower()
    sent = log[-3][1]["prompt"]
    assert sent.startswith("<|fim_prefix|><lore>\n") and "</lore>" in sent and sent.endswith("<|fim_middle|>")
    assert "Maren Vell climbed the stair" in sent
    system = log[-2][1]["messages"][0]
    assert system["role"] == "system" and "<lore>" in system["content"]
    assert log[-1][1]["prompt"] == "Maren Vell" and off.json()["penwright"]["lore"] == []


def test_vllm_publish_again_after_a_restart(upstream, registry, tmp_path):
    """A restarted daemon publishes the live version again; vLLM answers 400 "already been loaded" and the
    adapter is served all the same."""
    server, log = upstream
    registry.promote(1)
    for _ in range(2):  # two daemons in turn: the second finds it loaded
        services = proxy_stack(server, registry, "vllm", tmp_path)
        services.sync_live()
        assert services.upstream.live_adapter == "penwright@v1"
    bodies = [b for k, b, _ in log if k == "load_lora_adapter" and b["lora_name"] == "penwright@v1"]
    assert len(bodies) >= 2 and set(bodies[-1]) == {"lora_name", "lora_path"}


def test_ollama_publish_writes_a_gguf_adapter(upstream, tiny_model_dir, tmp_path, tmp_path_factory, monkeypatch):
    """A real adapter on the tiny Qwen2 base: the Modelfile's ADAPTER is a GGUF LoRA beside it (Ollama reads
    safetensors adapters only for Llama, Mistral and Gemma)."""
    import gguf
    from serving_fixtures import adapters_for

    server, _ = upstream
    monkeypatch.setenv("PATH", str(tmp_path))  # no ollama: the Modelfile and the command are written
    reg = Registry(tmp_path / "real.db", tmp_path / "real-adapters")
    v = reg.publish(
        adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())["lighthouse"], base_model="builtin:tiny"
    )
    services = proxy_stack(server, reg, "ollama", tmp_path)
    done = services.upstream.publish(v)
    folder = tmp_path / "exports" / "ollama" / f"v{v.version}"
    assert (folder / "Modelfile").read_text() == "FROM qwen2.5:0.5b\nADAPTER ./adapter.gguf\n"
    fields = gguf.GGUFReader(str(folder / "adapter.gguf")).fields
    assert fields["general.type"].contents() == "adapter" and fields["general.architecture"].contents() == "qwen2"
    assert done["ran"] is False and done["modelfile"] == str(folder / "Modelfile")
