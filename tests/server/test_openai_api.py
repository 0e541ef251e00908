"""The OpenAI-compatible API on a real uvicorn, driven by the official `openai` client (sync and async)."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from serving_fixtures import LiveServer, served_stack

from penwright.server.app import create_app
from penwright.server.context import Services
from penwright.server.engine import GenerationRequest, SamplingParams
from penwright.server.settings import ServerSettings

PROMPT = "Maren climbed"


@pytest.fixture(scope="module")
def stack(tiny_model_dir, tmp_path_factory):
    with served_stack(tiny_model_dir, tmp_path_factory) as stack:
        yield stack


@pytest.fixture()
def client(stack):
    return openai.OpenAI(base_url=stack[1].url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture()
def aclient(stack):
    return openai.AsyncOpenAI(base_url=stack[1].url + "/v1", api_key="unused", max_retries=0, timeout=120)


def direct(services, prompt, adapter, max_tokens):
    """What the engine itself makes of `prompt`: the reference for what the API must return."""
    return services.engine.submit(
        GenerationRequest(prompt, SamplingParams(max_tokens=max_tokens), adapter=adapter)
    ).text(60)[0]


def test_completion_non_stream_with_usage_and_metadata(stack, client):
    services, _ = stack
    raw = client.completions.with_raw_response.create(model="penwright", prompt=PROMPT, max_tokens=8, temperature=0)
    resp = raw.parse()
    assert raw.headers["x-penwright-adapter"] == "penwright@v1"
    assert resp.choices[0].text == direct(services, PROMPT, "v1", 8)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 8
    assert resp.usage.prompt_tokens == len(services.engine.encode(PROMPT))
    assert resp.model == "penwright@v1"
    assert resp.model_extra["penwright"]["adapter"] == "penwright@v1"
    assert resp.model_extra["penwright"]["lore"] == []


def test_completion_stream_matches_non_stream(client):
    full = client.completions.create(model="penwright", prompt=PROMPT, max_tokens=10, temperature=0).choices[0].text
    chunks = list(
        client.completions.create(model="penwright", prompt=PROMPT, max_tokens=10, temperature=0, stream=True)
    )
    assert len(chunks) >= 3
    assert "".join(c.choices[0].text for c in chunks) == full
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_sync_and_stream(stack, client):
    services, _ = stack
    msgs = [{"role": "system", "content": "Write."}, {"role": "user", "content": "Maren"}]
    resp = client.chat.completions.create(model="penwright", messages=msgs, max_tokens=6, temperature=0)
    expected = direct(services, services.engine.chat_prompt(msgs), "v1", 6)
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == expected
    stream = client.chat.completions.create(
        model="penwright",
        messages=msgs,
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens == 6


async def test_async_client_stream_and_not(stack, aclient):
    services, _ = stack
    resp = await aclient.completions.create(model="penwright@v2", prompt=PROMPT, max_tokens=6, temperature=0)
    assert resp.choices[0].text == direct(services, PROMPT, "v2", 6)
    stream = await aclient.chat.completions.create(
        model="penwright:base", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == direct(services, services.engine.chat_prompt([{"role": "user", "content": "Hi"}]), "@base", 5)


def test_models_list_with_parent(client):
    ids = {m.id: m for m in client.models.list()}
    assert {"penwright", "penwright:base", "penwright@v1", "penwright@v2"} <= set(ids)
    assert ids["penwright@v2"].model_extra["parent"] == "penwright:base"
    assert ids["penwright"].model_extra["root"] == "penwright@v1"


def test_adapter_selection_by_model(stack, client):
    services, _ = stack
    outs = {}
    for model, adapter in (
        ("penwright", "v1"),
        ("penwright@v1", "v1"),
        ("penwright@v2", "v2"),
        ("penwright:base", "@base"),
    ):
        raw = client.completions.with_raw_response.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0)
        outs[model] = raw.parse().choices[0].text
        assert outs[model] == direct(services, PROMPT, adapter, 8), model
        assert raw.headers["x-penwright-adapter"] == (
            f"penwright@{adapter}" if adapter != "@base" else "penwright:base"
        )
    assert len({outs["penwright"], outs["penwright@v2"], outs["penwright:base"]}) == 3


def test_adapter_scale_per_request(stack, client):
    services, _ = stack
    zero = (
        client.completions.create(
            model="penwright@v2",
            prompt=PROMPT,
            max_tokens=8,
            temperature=0,
            extra_body={"penwright": {"adapter_scale": 0.0}},
        )
        .choices[0]
        .text
    )
    assert zero == direct(services, PROMPT, "@base", 8)


@pytest.mark.parametrize("style", ["generic", "qwen"])
def test_continue_fim_prompt_is_translated(stack, client, style):
    """Continue's openai provider: FIM sentinels inside `prompt`, no `suffix`, streamed."""
    services, _ = stack
    prefix, suffix = "Maren climbed the stairs", " and the lamp was lit."
    if style == "generic":
        prompt = f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    else:
        prompt = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    chunks = client.completions.create(
        model="penwright:base", prompt=prompt, max_tokens=8, temperature=0, stream=True, stop=["\n\n"]
    )
    text = "".join(c.choices[0].text for c in chunks)
    native = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"  # builtin:tiny has Qwen's FIM tokens
    assert text == direct(services, native, "@base", 8)
    with_suffix = client.completions.create(
        model="penwright:base", prompt=prefix, suffix=suffix, max_tokens=8, temperature=0
    )
    assert with_suffix.choices[0].text == text
    assert (
        text
        != client.completions.create(model="penwright:base", prompt=prefix, max_tokens=8, temperature=0).choices[0].text
    )


def test_prose_stop_at_sentence_and_paragraph(stack, client):
    services, _ = stack
    eng = services.engine

    def sample(seed):
        req = GenerationRequest("The rain.", SamplingParams(max_tokens=60, temperature=1.5, seed=seed), adapter="@base")
        return eng.submit(req).text(60)[0]

    # a seed whose free continuation has a plain sentence end (". ") and no other end mark before it
    seed, free = next(
        (s, t)
        for s in range(300)
        for t in [sample(s)]
        if ". " in t and not any(c in t[: t.index(". ")] for c in "!?\u2026\n")
    )
    args = dict(model="penwright:base", prompt="The rain.", max_tokens=60, temperature=1.5, seed=seed)
    assert client.completions.create(**args).choices[0].text == free
    cut = client.completions.create(**args, extra_body={"penwright": {"stop_at": "sentence"}})
    assert cut.choices[0].text == free[: free.index(". ") + 1]
    assert cut.choices[0].finish_reason == "stop"


def test_status_and_health(stack):
    services, server = stack
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    status = httpx.get(server.url + "/api/status").json()
    assert status["adapter"] == "penwright@v1" and status["backend"] == "torch"
    assert status["engine"]["device"] == "cpu" and status["queue_depth"] == 0
    assert "memory_bytes" in status["engine"]


async def test_hundred_requests_at_once(stack, aclient):
    async def one(i):
        r = await aclient.completions.create(model="penwright", prompt=f"{PROMPT} {i}", max_tokens=3, temperature=0)
        return r.choices[0].finish_reason

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert results == ["length"] * 100
    assert stack[0].engine.status()["active"] == 0


def test_persona_frame_wraps_chat_when_enabled(stack):
    from penwright.server.settings import PersonaSettings

    services, _ = stack
    persona = PersonaSettings(
        enabled=True, author="Jane Austen", template="Role: {author}'s co-writer.\nInput: {input}"
    )
    framed = Services(settings=ServerSettings(), engine=services.engine, registry=services.registry, persona=persona)
    msgs = [{"role": "user", "content": "Continue the ball scene."}]
    with LiveServer(create_app(framed)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        live = client.chat.completions.create(model="penwright", messages=msgs, max_tokens=6, temperature=0)
        base = client.chat.completions.create(model="penwright:base", messages=msgs, max_tokens=6, temperature=0)
    wrapped = [{"role": "user", "content": "Role: Jane Austen's co-writer.\nInput: Continue the ball scene."}]
    assert live.choices[0].message.content == direct(services, services.engine.chat_prompt(wrapped), "v1", 6)
    assert live.usage.prompt_tokens == len(services.engine.encode(services.engine.chat_prompt(wrapped)))
    # the base model is asked plainly: the frame belongs to the persona adapter
    assert base.usage.prompt_tokens == len(services.engine.encode(services.engine.chat_prompt(msgs)))


def test_token_id_prompt(stack, client):
    services, _ = stack
    ids = services.engine.encode(PROMPT)
    resp = client.completions.create(model="penwright:base", prompt=ids, max_tokens=5, temperature=0)
    assert resp.choices[0].text == direct(services, PROMPT, "@base", 5)
    assert resp.usage.prompt_tokens == len(ids)
