"""The OpenAI surface clients expect, through the official `openai` client on a real uvicorn: logprobs and echo,
top_k/min_p, models.retrieve with real `created` and `max_model_len`, 400 for fields we cannot honour, and
vLLM's /tokenize, /detokenize, /version and Prometheus /metrics."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from importlib.metadata import version as dist_version

import httpx
import openai
import pytest
from serving_fixtures import served_stack

PROMPT = "Maren climbed the lighthouse"


@pytest.fixture(scope="module")
def stack(tiny_model_dir, tmp_path_factory):
    with served_stack(tiny_model_dir, tmp_path_factory) as stack:
        yield stack


@pytest.fixture()
def client(stack):
    return openai.OpenAI(base_url=stack[1].url + "/v1", api_key="unused", max_retries=0, timeout=60)


def reference_logprobs(services, ids: list[int], adapter: str) -> list[list[float]]:
    """Log-softmax rows of the served model itself (PEFT model, adapter active), for ids[1:]: the reference."""
    import torch

    backend = services.engine.backend

    def run():
        backend._activate(adapter, None)
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0, :-1]
        return torch.log_softmax(logits.float(), -1)

    return services.engine.call(run)


def test_completion_logprobs_are_the_models_own(stack, client):
    services, _ = stack
    resp = client.completions.create(model="penwright", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3)
    choice = resp.choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.tokens) == 6
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    prompt_ids = services.engine.encode(PROMPT)
    gen_ids = services.engine.encode(choice.text)
    ref = reference_logprobs(services, prompt_ids + gen_ids, "v1")
    for i, (tok, tok_lp, top) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
        row = ref[len(prompt_ids) - 1 + i]
        assert math.isclose(tok_lp, float(row.max()), abs_tol=1e-3)  # greedy: the chosen token is the top one
        assert len(top) <= 3 and math.isclose(max(top.values()), tok_lp, abs_tol=1e-4)
        assert tok in top


def test_echo_with_logprobs(stack, client):
    services, _ = stack
    resp = client.completions.create(
        model="penwright", prompt=PROMPT, max_tokens=4, temperature=0, echo=True, logprobs=0
    )
    choice = resp.choices[0]
    plain = client.completions.create(model="penwright", prompt=PROMPT, max_tokens=4, temperature=0).choices[0].text
    assert choice.text == PROMPT + plain
    n_prompt = len(services.engine.encode(PROMPT))
    assert "".join(choice.logprobs.tokens) == choice.text
    assert choice.logprobs.token_logprobs[0] is None  # nothing predicts the first token
    assert all(x is not None and x <= 0 for x in choice.logprobs.token_logprobs[1:])
    assert choice.logprobs.text_offset[n_prompt] == len(PROMPT)
    chunks = list(
        client.completions.create(model="penwright", prompt=PROMPT, max_tokens=4, temperature=0, echo=True, stream=True)
    )
    assert chunks[0].choices[0].text == PROMPT
    assert "".join(c.choices[0].text for c in chunks) == PROMPT + plain


def test_chat_logprobs(client):
    resp = client.chat.completions.create(
        model="penwright",
        messages=[{"role": "user", "content": "Maren"}],
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    content = resp.choices[0].logprobs.content
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
        assert math.isclose(t.logprob, t.top_logprobs[0].logprob, abs_tol=1e-4)
        assert bytes(t.bytes).decode("utf-8") == t.token


def test_top_k_one_and_min_p_one_are_greedy(client):
    greedy = client.completions.create(model="penwright", prompt=PROMPT, max_tokens=8, temperature=0).choices[0].text
    for extra in ({"top_k": 1}, {"min_p": 1.0}):
        texts = {
            client.completions.create(
                model="penwright", prompt=PROMPT, max_tokens=8, temperature=1.5, seed=seed, extra_body=extra
            )
            .choices[0]
            .text
            for seed in (1, 2, 3)
        }
        assert texts == {greedy}, extra
    wide = {
        client.completions.create(
            model="penwright", prompt=PROMPT, max_tokens=8, temperature=1.5, seed=seed, extra_body={"top_k": 50}
        )
        .choices[0]
        .text
        for seed in (1, 2, 3)
    }
    assert wide != {greedy}  # the filter, not the temperature, made them greedy


def test_models_retrieve_created_and_context(stack, client):
    services, _ = stack
    card = client.models.retrieve("penwright@v1")
    v1 = services.registry.get(1)
    assert card.id == "penwright@v1"
    assert card.created == int(datetime.fromisoformat(v1.created_at).timestamp()) > 1_600_000_000
    assert card.model_extra["max_model_len"] == services.engine.context_length
    live = client.models.retrieve("penwright")
    assert live.created == card.created  # the live card is v1's
    assert client.models.retrieve("penwright:base").created > 1_600_000_000
    assert all(m.created > 0 for m in client.models.list().data)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("penwright@v99")


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"50": 5}}, "logit_bias"),
        ({"best_of": 2}, "best_of"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_fields_we_cannot_honour_are_a_400(client, caplog, extra, param):
    with caplog.at_level(logging.INFO):
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model="penwright", prompt="x", max_tokens=2, extra_body=extra)
    assert err.value.body["param"] == param and "not supported" in err.value.body["message"]
    assert "Traceback" not in caplog.text


LOOKUP = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def test_chat_forced_tools_and_n_are_a_400_and_harmless_values_pass(client):
    msgs = [{"role": "user", "content": "Maren"}]
    for choice in ("required", {"type": "function", "function": {"name": "lookup"}}):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="penwright", messages=msgs, max_tokens=2, tools=LOOKUP, tool_choice=choice
            )
        assert err.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="penwright", messages=msgs, max_tokens=2, n=2)
    assert err.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="penwright", prompt="x", max_tokens=2, logprobs=1, stream=True)
    assert err.value.body["param"] == "logprobs"
    # offered tools (tool_choice auto, as Continue's agent sends them): answered in plain text, no tool calls
    ok = client.chat.completions.create(
        model="penwright", messages=msgs, max_tokens=2, tools=LOOKUP, response_format={"type": "text"}
    )
    assert ok.choices[0].message.content is not None and not ok.choices[0].message.tool_calls


def test_tokenize_and_detokenize(stack):
    services, server = stack
    r = httpx.post(server.url + "/tokenize", json={"model": "penwright", "prompt": PROMPT, "return_token_strs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == services.engine.encode(PROMPT) and body["count"] == len(body["tokens"])
    assert body["max_model_len"] == services.engine.context_length and "".join(body["token_strs"]) == PROMPT
    back = httpx.post(server.url + "/detokenize", json={"model": "penwright", "tokens": body["tokens"]}).json()
    assert back == {"prompt": PROMPT}
    msgs = [{"role": "user", "content": "Maren"}]
    chat = httpx.post(server.url + "/tokenize", json={"messages": msgs}).json()
    assert chat["tokens"] == services.engine.encode(services.engine.chat_prompt(msgs))
    assert httpx.post(server.url + "/tokenize", json={}).status_code == 400


def test_version_and_metrics(stack, client):
    from prometheus_client.parser import text_string_to_metric_families

    _, server = stack
    assert httpx.get(server.url + "/version").json() == {"version": dist_version("penwright")}
    client.completions.create(model="penwright", prompt=PROMPT, max_tokens=5, temperature=0)
    list(client.completions.create(model="penwright", prompt=PROMPT, max_tokens=5, temperature=0, stream=True))
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="penwright", prompt="x", max_tokens=2, extra_body={"best_of": 3})
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("penwright_requests_total", route="/v1/completions", status="200") >= 2
    assert value("penwright_requests_total", route="/v1/completions", status="400") >= 1
    assert value("penwright_generation_tokens_total") >= 10
    assert value("penwright_prompt_tokens_total") >= 2 * len(stack[0].engine.encode(PROMPT))
    assert value("penwright_time_to_first_token_seconds_count") >= 2
    assert value("penwright_inter_token_seconds_count") >= 8
    assert value("penwright_queue_depth") == 0
    assert value("penwright_training", figure="running") == 0


def test_client_errors_log_one_line(stack, client, caplog):
    with caplog.at_level(logging.INFO):
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="penwright@v99", prompt="x", max_tokens=2)
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="penwright", prompt="x", max_tokens=2, extra_body={"best_of": 4})
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="penwright", prompt="x", max_tokens=0)
    lines = [r for r in caplog.records if r.name == "penwright.server.app"]
    assert [r.getMessage().split(": ")[1][:3] for r in lines] == ["404", "400", "400"]
    assert "POST /v1/completions" in lines[0].getMessage() and "penwright@v99" in lines[0].getMessage()
    assert "max_tokens" in lines[2].getMessage()
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text


def test_metrics_report_the_training_job(stack, tmp_path):
    """The daemon's job queue (a real SQLite JobQueue) as /metrics shows it: running, step, total, loss, queued."""
    from prometheus_client.parser import text_string_to_metric_families
    from serving_fixtures import LiveServer

    from penwright.server.app import create_app
    from penwright.server.daemon.jobs import JobQueue

    services, _ = stack
    jobs = JobQueue(tmp_path / "penwright.db")
    job = jobs.start(jobs.enqueue("manual").id, "run-1")
    jobs.update(job.id, step=7, total=20, loss=2.5)
    jobs.enqueue("auto")
    app = create_app(services)
    app.state.daemon = type("Daemon", (), {"jobs": jobs})()  # what the daemon's build_app sets
    with LiveServer(app) as server:
        text = httpx.get(server.url + "/metrics").text
    figures = {
        s.labels["figure"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "penwright_training"
    }
    assert figures == {"running": 1.0, "step": 7.0, "total_steps": 20.0, "loss": 2.5, "queued": 1.0}


def test_logprobs_stop_where_the_text_stops(client):
    full = client.completions.create(model="penwright", prompt=PROMPT, max_tokens=12, temperature=0).choices[0].text
    stop = full.strip()[len(full.strip()) // 2 :][:3]  # a stop string from the middle of what greedy writes
    resp = client.completions.create(
        model="penwright", prompt=PROMPT, max_tokens=12, temperature=0, logprobs=1, stop=[stop]
    )
    text, lp = resp.choices[0].text, resp.choices[0].logprobs
    assert stop not in text and full.startswith(text)
    joined = "".join(lp.tokens)
    assert joined.startswith(text) and len(lp.tokens) < 12  # the tokens past the stop are not reported
    assert all(off < len(text) or not text for off in lp.text_offset)  # every reported token starts in the text


def test_a_user_error_from_any_route_logs_one_line(stack, caplog):
    """A PenwrightError raised by any router (here one passed to create_app, as the daemon passes its own) is
    answered in OpenAI's shape and logged in one line, not as a traceback."""
    from fastapi import APIRouter
    from serving_fixtures import LiveServer

    from penwright.errors import PenwrightError
    from penwright.server.app import create_app

    extra = APIRouter()

    @extra.get("/api/raises")
    async def raises():
        raise PenwrightError("The chapter file is locked.", "Close it in the other program.")

    with caplog.at_level(logging.INFO), LiveServer(create_app(stack[0], routers=(extra,))) as server:
        r = httpx.get(server.url + "/api/raises")
    assert r.status_code == 400 and "locked" in r.json()["error"]["message"]
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "penwright.server.app"]
    assert len(lines) == 1 and lines[0].startswith("GET /api/raises: 400 The chapter file is locked.")
    assert "\n" not in lines[0]
    assert not any(rec.exc_info for rec in caplog.records) and "Traceback" not in caplog.text
