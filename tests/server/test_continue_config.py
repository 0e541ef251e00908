"""`penwright continue-config`, and requests shaped exactly like Continue.dev's, against the real daemon.

Continue's `openai` provider: autocomplete renders `promptTemplates.autocomplete` itself (Handlebars) and
POSTs `{model, prompt, max_tokens, temperature, stop, stream: true}` to `{apiBase}/completions` (no
`suffix`); chat POSTs to `{apiBase}/chat/completions` with `stream: true`; the `http` context provider
POSTs `{query, fullInput, options, workspacePath}` and shows `[{name, description, content}]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from pwtest import copy_example, free_port, serve_project

from penwright.cli import main as penwright_main


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("continue") / "novel"
    port = free_port()
    copy_example(root, f"server:\n  port: {port}\n")
    with serve_project(root, f"http://127.0.0.1:{port}", root.parent / "daemon.log"):
        yield root


def config_of(root: Path, capsys) -> dict:
    assert penwright_main(["continue-config", "--project", str(root)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Continue.dev config")
    return yaml.safe_load(text)


def render(template: str, **values: str) -> str:
    """Continue renders the template with Handlebars; triple braces insert text unescaped."""
    for key, value in values.items():
        template = template.replace("{{{%s}}}" % key, value)
    assert "{{" not in template, template
    return template


def sse(response: httpx.Response) -> list[dict]:
    chunks = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunks.append(json.loads(data))
    return chunks


def test_config_points_continue_at_this_daemon(served, capsys):
    cfg = config_of(served, capsys)
    info = json.loads((served / ".penwright" / "daemon.json").read_text())
    (model,) = cfg["models"]
    assert model["provider"] == "openai" and model["model"] == "penwright"
    assert model["apiBase"] == f"{info['url']}/v1"  # the configured port (penwright.yaml), where the daemon listens
    assert model["autocompleteOptions"]["modelTimeout"] >= 1000  # Continue's 150 ms default is too short on a CPU
    assert {"chat", "autocomplete"} <= set(model["roles"])
    assert (
        "{{{prefix}}}" in model["promptTemplates"]["autocomplete"]
        and "{{{suffix}}}" in model["promptTemplates"]["autocomplete"]
    )
    (ctx,) = cfg["context"]
    assert ctx["provider"] == "http" and ctx["params"]["url"] == f"{info['url']}/api/lore/context"


def test_continue_autocomplete_request(served, capsys):
    model = config_of(served, capsys)["models"][0]
    prefix = "Maren Vell climbed the hundred and twelve steps, and at the top she"
    suffix = "\n\nBy morning the storm had passed."
    body = {  # what Continue's openai provider posts for tab autocomplete
        "model": model["model"],
        # Continue's prefix: its snippet header (a Markdown file's path, comment mark "") before the prose
        "prompt": render(
            model["promptTemplates"]["autocomplete"], prefix="\n manuscript/chapter-03.md\n" + prefix, suffix=suffix
        ),
        "max_tokens": model["defaultCompletionOptions"]["maxTokens"],
        "temperature": model["defaultCompletionOptions"]["temperature"],
        # getStopTokens() for a string template: multiline stops + Continue's common stops
        "stop": ["\n\n", "\r\n\r\n", "/src/", "#- coding: utf-8", "```"],
        "stream": True,
        **model["requestOptions"]["extraBodyProperties"],
    }
    headers = {"Authorization": f"Bearer {model['apiKey']}", "Content-Type": "application/json"}
    with httpx.stream("POST", f"{model['apiBase']}/completions", json=body, headers=headers, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = sse(r)
    text = "".join(c["choices"][0].get("text") or "" for c in chunks)
    assert chunks and all(c["object"] == "text_completion" for c in chunks)
    assert "<fim_" not in text and "{{" not in text
    assert "By morning the storm" not in text  # the suffix was understood as what follows, not echoed
    assert "chapter-03" not in text and "manuscript/" not in text


def test_continue_chat_request(served, capsys):
    model = config_of(served, capsys)["models"][0]
    body = {
        "model": model["model"],
        "messages": [
            {"role": "system", "content": "You are a helpful writing partner."},
            {"role": "user", "content": "Continue the scene: Maren lit the lamp."},
        ],
        "max_tokens": 40,
        "temperature": 0.8,
        "top_p": 0.95,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "stop": ["\n\n\n"],
        "stream": True,
        **model["requestOptions"]["extraBodyProperties"],
    }
    headers = {"Authorization": f"Bearer {model['apiKey']}"}
    with httpx.stream("POST", f"{model['apiBase']}/chat/completions", json=body, headers=headers, timeout=120) as r:
        assert r.status_code == 200, r.read()
        chunks = sse(r)
    assert chunks and chunks[0]["object"] == "chat.completion.chunk"
    content = "".join((c["choices"][0].get("delta") or {}).get("content") or "" for c in chunks if c["choices"])
    assert content.strip()


def test_continue_http_context_provider(served, capsys):
    ctx = config_of(served, capsys)["context"][0]["params"]
    body = {
        "query": "Maren",
        "fullInput": "Who is Maren and what happened to her brother?",
        "options": {},
        "workspacePath": [served.as_uri()],
    }
    r = httpx.post(ctx["url"], json=body, timeout=60)
    assert r.status_code == 200, r.text
    items = r.json()
    assert isinstance(items, list) and items
    assert all(set(i) == {"name", "description", "content"} for i in items)
    assert items[0]["name"].startswith("Maren Vell") and "keeper" in items[0]["content"].lower()


def test_write_refuses_to_overwrite_without_force(served, tmp_path, capsys):
    target = tmp_path / "continue.yaml"
    assert penwright_main(["continue-config", "-p", str(served), "--write", str(target)]) == 0
    assert yaml.safe_load(target.read_text())["models"][0]["provider"] == "openai"
    assert penwright_main(["continue-config", "-p", str(served), "--write", str(target)]) == 2
    assert "exists" in capsys.readouterr().err
    assert penwright_main(["continue-config", "-p", str(served), "--write", str(target), "--force"]) == 0
    assert penwright_main(["continue-config", "-p", str(served), "--write"]) == 0
    written = yaml.safe_load((served / ".continue" / "assistants" / "penwright.yaml").read_text())
    assert {"name", "version", "schema", "models"} <= set(written)  # a whole local assistant, as Continue loads it
