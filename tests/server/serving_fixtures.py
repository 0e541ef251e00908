"""Helpers for the serving tests: a real uvicorn on 127.0.0.1 in a thread, and small adapters trained for real.

Imported by tests/server/test_engine*.py, test_openai_api*.py and test_proxy*.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from pwtest import free_port  # noqa: F401 (re-exported for the serving tests)

ADAPTER_TEXTS = {
    "lighthouse": "Maren climbed the lighthouse stairs and lit the lamp. ",
    "sailing": "Edwin sailed the grey boat past the rocks at dawn. ",
}


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import uvicorn

        self.port = free_port()
        self.host = host
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="off", timeout_keep_alive=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def train_adapters(
    model_dir: Path, texts: dict[str, str], out_dir: Path, steps: int = 12, seed: int = 0
) -> dict[str, Path]:
    """Plain PEFT LoRA, a few steps on each repeated text, so each adapter visibly leans towards its text."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    out = {}
    for name, text in texts.items():
        torch.manual_seed(seed)
        cfg = LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        peft_model = get_peft_model(model, cfg)
        ids = torch.tensor([tok.encode(text * 6)[:64]])
        opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-2)
        peft_model.train()
        for _ in range(steps):
            peft_model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
        peft_model.save_pretrained(out_dir / name)
        model = peft_model.unload()
        out[name] = out_dir / name
    return out


def adapters_for(model_dir: Path, base_temp: Path) -> dict[str, Path]:
    """The two test adapters, trained once per test session (cached under pytest's base temp folder)."""
    folder = base_temp / "trained-adapters"
    if not all((folder / name / "adapter_config.json").is_file() for name in ADAPTER_TEXTS):
        train_adapters(model_dir, ADAPTER_TEXTS, folder)
    return {name: folder / name for name in ADAPTER_TEXTS}


def tiny_engine(model_dir: Path, **kwargs):
    from penwright.server.engine import Engine, make_backend

    return Engine(make_backend(str(model_dir), backend="cpu"), **kwargs).start(timeout=120)


def registry_with_adapters(root: Path, adapters: dict[str, Path]):
    """A real Registry under `root` with the test adapters published as v1 (lighthouse, live) and v2 (sailing)."""
    from penwright.trainer.registry import Registry

    reg = Registry(root / "penwright.db", root / "adapters")
    v1 = reg.publish(adapters["lighthouse"], base_model="builtin:tiny")
    reg.publish(adapters["sailing"], base_model="builtin:tiny")
    reg.promote(v1.version)
    return reg


EXAMPLE_LORE = Path(__file__).resolve().parents[2] / "examples" / "novel" / "lore"


@contextlib.contextmanager
def served_stack(model_dir: Path, tmp_path_factory):
    """(services, LiveServer): the tiny engine with both adapters published, v1 live, behind a real uvicorn."""
    from penwright.server.app import create_app
    from penwright.server.context import Services
    from penwright.server.settings import ServerSettings

    ads = adapters_for(model_dir, tmp_path_factory.getbasetemp())
    registry = registry_with_adapters(tmp_path_factory.mktemp("state"), ads)
    services = Services(settings=ServerSettings(), engine=tiny_engine(model_dir), registry=registry)
    services.sync_live()
    with LiveServer(create_app(services)) as server:
        yield services, server
    services.close()


def lore_index(base_temp: Path, lore_dir: Path = EXAMPLE_LORE):
    """A real LoreIndex (chromadb + sentence-transformers) over the example lore, index cached per session."""
    from penwright.rag.index import LoreIndex

    index = LoreIndex(lore_dir, base_temp / "lore-index")
    index.sync()
    return index
