"""Proxy mode against llama.cpp's own llama-server: the base and two adapters exported to GGUF by Penwright,
loaded by llama-server (`--lora`, scales set at runtime through `/lora-adapters`); promoting a version in the
registry publishes it, and completions through Penwright are what PyTorch + PEFT generate with that version.

Needs the llama-server binary ($PENWRIGHT_LLAMA_SERVER or on PATH): `scripts/llamacpp-roundtrip.sh` builds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from serving_fixtures import ADAPTER_TEXTS, LiveServer, adapters_for, free_port

PROMPT = "Maren climbed"


def llama_server() -> str:
    exe = os.environ.get("PENWRIGHT_LLAMA_SERVER") or shutil.which("llama-server")
    if not exe or not Path(exe).is_file():
        pytest.skip("llama.cpp's llama-server is not built here: scripts/llamacpp-roundtrip.sh")
    return exe


def peft_text(model_dir: Path, adapter: Path | None, n: int) -> str:
    """Greedy text of the base (adapter None) or base + adapter in PyTorch: the reference."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    ids = tok.encode(PROMPT, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return tok.decode(out[0, len(ids) :], skip_special_tokens=True)


def start(exe: str, base: Path, loras: list[Path], port: int, log: Path) -> subprocess.Popen:
    cmd = [
        exe,
        "-m",
        str(base),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        "512",
        "-t",
        "2",
        "--lora-init-without-apply",
        "--lora",
        ",".join(str(lora) for lora in loras),
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"llama-server did not start:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_proxy_publishes_promoted_adapters_to_llama_server(tiny_model_dir, tmp_path_factory, tmp_path):
    from penwright.server.app import create_app
    from penwright.server.context import Services
    from penwright.server.proxy import Upstream
    from penwright.server.settings import ServerSettings, UpstreamSettings
    from penwright.trainer.export import export_gguf
    from penwright.trainer.registry import Registry

    exe = llama_server()
    adapters = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    registry = Registry(tmp_path / "penwright.db", tmp_path / "adapters")
    versions = {name: registry.publish(adapters[name], base_model="builtin:tiny") for name in ADAPTER_TEXTS}
    ggufs = tmp_path / "gguf"
    base = export_gguf(str(tiny_model_dir), adapters["lighthouse"], tmp_path / "export")["base"]
    loras = []
    for v in versions.values():  # llama-server's adapters are matched to versions by their file names
        loras.append(export_gguf(str(tiny_model_dir), v.path, ggufs / f"v{v.version}")["adapter"])
    port = free_port()
    proc = start(exe, base, loras, port, tmp_path / "llama-server.log")
    try:
        settings = UpstreamSettings(url=f"http://127.0.0.1:{port}/v1", kind="llamacpp", model="tiny")
        services = Services(
            settings=ServerSettings(),
            registry=registry,
            upstream=Upstream(settings, export_dir=tmp_path / "exports", context_length=512),
        )
        with LiveServer(create_app(services)) as pw:
            texts = {}
            for name, v in versions.items():
                registry.promote(v.version)
                services.sync_live()
                scales = {a["id"]: a["scale"] for a in httpx.get(f"http://127.0.0.1:{port}/lora-adapters").json()}
                assert sorted(scales.values()) == [0.0, 1.0]  # only the promoted version is applied
                r = httpx.post(
                    pw.url + "/v1/completions",
                    timeout=60,
                    json={"model": "penwright", "prompt": PROMPT, "max_tokens": 8, "temperature": 0},
                )
                assert r.status_code == 200, r.text
                texts[name] = r.json()["choices"][0]["text"]
                assert texts[name] == peft_text(tiny_model_dir, v.path, 8), name
                for other in texts:  # every version published so far, by name, while this one is live
                    r = httpx.post(
                        pw.url + "/v1/completions",
                        timeout=60,
                        json={"model": versions[other].model_id, "prompt": PROMPT, "max_tokens": 8, "temperature": 0},
                    )
                    assert r.json()["choices"][0]["text"] == texts[other], (name, other)
                base_text = httpx.post(
                    pw.url + "/v1/completions",
                    timeout=60,
                    json={"model": "penwright:base", "prompt": PROMPT, "max_tokens": 8, "temperature": 0},
                ).json()
                assert base_text["choices"][0]["text"] == peft_text(tiny_model_dir, None, 8)
        assert texts["lighthouse"] != texts["sailing"]
    finally:
        proc.terminate()
        proc.wait(10)
