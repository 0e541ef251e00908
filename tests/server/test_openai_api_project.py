"""A whole project served by `python -m penwright.server.app`: builtin:tiny, registry, real lore, real client."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import openai
import pytest
from serving_fixtures import free_port


def test_refuses_public_bind_without_key(example_project):
    run = subprocess.run(
        [sys.executable, "-m", "penwright.server.app", "--project", str(example_project), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "api_key" in run.stderr and "0.0.0.0" in run.stderr
    assert not (example_project / ".penwright" / "models").exists()  # refused before loading anything


@pytest.fixture()
def served_project(example_project):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "penwright.server.app", "--project", str(example_project), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not come up")
    yield url, example_project
    proc.terminate()
    proc.wait(30)


def test_project_serves_with_lore(served_project):
    url, project = served_project
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    raw = client.completions.with_raw_response.create(
        model="penwright",
        prompt="<fim_prefix>Maren Vell climbed the stairs of the Carrow light<fim_suffix><fim_middle>",
        max_tokens=6,
        temperature=0,
    )
    resp = raw.parse()
    meta = resp.model_extra["penwright"]
    assert meta["adapter"] == "penwright:base"  # nothing trained yet: the base model serves
    names = {e["name"] for e in meta["lore"]}
    assert any("Maren" in n for n in names), names
    assert meta["lore_tokens"] > 0
    assert raw.headers["x-penwright-lore"]
    assert resp.usage.prompt_tokens > meta["lore_tokens"]  # the lore went into the prompt
    plain = client.completions.create(
        model="penwright",
        prompt="Maren Vell climbed the stairs of the Carrow light",
        max_tokens=6,
        temperature=0,
        extra_body={"penwright": {"lore": False}},
    )
    assert plain.model_extra["penwright"]["lore"] == []
    assert plain.usage.prompt_tokens < resp.usage.prompt_tokens
    status = httpx.get(url + "/api/status").json()
    assert status["lore"] is True and status["engine"]["backend"] == "torch"
    assert (project / ".penwright" / "penwright.db").is_file()
