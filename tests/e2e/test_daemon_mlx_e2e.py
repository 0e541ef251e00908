"""The daemon's whole loop on MLX (mlx-lm[cpu] here; Metal on Apple Silicon): `penwright serve` as a subprocess on a
copy of examples/novel with builtin:tiny and `model.backend: mlx`. The author saves a chapter -> re-curation ->
a job trains with mlx-lm -> the gate measures the mlx-lm adapter (as the same weights in a PEFT LoRA on torch) ->
promotion -> the MLX engine serves completions from the new version: the same tokens as mlx-lm itself computes
with that adapter folder, and not the base model's. Then "retrain now" warm-starts from the live mlx-lm adapter and
is gated against it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from daemon_proc import NEW_SCENE, DaemonProcess, configure

pytestmark = pytest.mark.slow  # about 2 minutes here: a daemon start, two mlx-lm trainings and gates
pytest.importorskip("mlx_lm", reason="mlx-lm[cpu] is part of the dev install; `pip install 'penwright[mlx]'`")

CHAPTER = "manuscript/03-the-ledger.md"
PROMPT = "The lamp at Carrow Point burned"


def greedy_mlx(base: str, adapter: Path | None, ids: list[int], n: int) -> list[int]:
    """`n` greedy tokens after `ids` from mlx-lm's own model (plus an adapter folder), no penwright code."""
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(base, adapter_path=str(adapter) if adapter else None)
    out: list[int] = []
    for _ in range(n):
        out.append(int(mx.argmax(model(mx.array([ids + out]))[0, -1]).item()))
    return out


def complete(daemon: DaemonProcess, model: str, ids: list[int], n: int) -> tuple[dict, str]:
    r = daemon.api(
        "POST",
        "/v1/completions",
        json={"model": model, "prompt": ids, "max_tokens": n, "temperature": 0, "penwright": {"lore": False}},
    )
    assert r.status_code == 200, r.text
    return r.json(), r.headers["X-Penwright-Adapter"]


def test_save_to_a_completion_from_an_mlx_trained_adapter(example_project, tmp_path):
    project = example_project
    configure(project, min_new_words=1200)
    settings = project / "penwright.yaml"
    settings.write_text(settings.read_text().replace("model:\n", "model:\n  backend: mlx\n", 1))
    t0 = time.monotonic()
    daemon = DaemonProcess(project, tmp_path / "daemon.log").start()
    try:
        daemon.wait_event(lambda e: e["type"] == "daemon.ready", 180)
        t_ready = time.monotonic()
        status = daemon.api("GET", "/api/status").json()
        assert status["backend"] == "mlx" and status["engine"]["max_batch"] == 1
        mark = daemon.last_id
        with open(project / CHAPTER, "a", encoding="utf-8") as fh:  # the author saves a new scene
            fh.write(NEW_SCENE)
        t_save = time.monotonic()
        curate = daemon.wait_event(lambda e: e["type"] == "curate" and CHAPTER in e.get("files", []), 60, mark)
        queued = daemon.wait_event(lambda e: e["type"] == "job.queued", 60, curate["id"])
        job = queued["job_id"]
        daemon.wait_event(lambda e: e["type"] == "job.progress" and e.get("job_id") == job and e.get("step"), 180)
        finished = daemon.wait_event(
            lambda e: e.get("job_id") == job and e["type"] in ("job.finished", "job.failed"), 300, mark
        )
        assert finished["type"] == "job.finished", finished
        gate = daemon.wait_event(lambda e: e["type"] == "gate" and e.get("job_id") == job, 30, mark)
        assert gate["decision"] == "promote", gate["reason"]
        candidate = gate["candidate"]
        assert candidate["adapter_format"] == "mlx" and candidate["train"]["backend"] == "mlx"
        assert candidate["train"]["adapter_format"] == "mlx" and candidate["train"]["status"] == "completed"
        assert candidate["perplexity"] < gate["reference"]["perplexity"]  # measured: it learned the manuscript
        assert gate["reference_name"] == "base" and candidate["voice"]["own_ratio"] < 1.0
        version = gate["version"]
        daemon.wait_event(lambda e: e["type"] == "adapter.swapped" and e["version"] == version, 60, mark)
        t_live = time.monotonic()

        adapters = daemon.api("GET", "/api/adapters").json()
        record = next(v for v in adapters["adapters"] if v["version"] == version)
        assert adapters["live"] == version and record["status"] == "live" and record["format"] == "mlx"
        adapter_dir, base = Path(record["path"]), record["base_model"]
        assert json.loads((adapter_dir / "adapter_config.json").read_text())["lora_parameters"]["rank"] > 0
        run = json.loads((project / ".penwright" / "runs" / record["run_id"] / "result.json").read_text())
        assert run["adapter_format"] == "mlx" and run["backend"] == "mlx" and run["metrics"]["train_rows"] > 0

        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(base).encode(PROMPT, add_special_tokens=False)
        served, served_by = complete(daemon, "penwright", ids, 12)
        assert served_by == f"penwright@v{version}" and served["penwright"]["adapter"] == served_by
        from_base, base_by = complete(daemon, "penwright:base", ids, 12)
        assert base_by == "penwright:base"
        tok = AutoTokenizer.from_pretrained(base)
        ends = {tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", tok.eos_token) if t}
        want = greedy_mlx(base, adapter_dir, ids, 12)
        want = want[: next((i for i, t in enumerate(want) if t in ends), len(want))]  # the engine stops there
        # the adapter, applied (a completion never ends in half a character: the engine holds back an incomplete one)
        assert served["choices"][0]["text"] == tok.decode(want, skip_special_tokens=True).rstrip("\ufffd")
        assert want != greedy_mlx(base, None, ids, 12)
        assert served["choices"][0]["text"] != from_base["choices"][0]["text"]
        took = {k: round(v, 1) for k, v in (finished.get("timings") or {}).items()}
        t_done = time.monotonic()

        # "retrain now": a warm start from the live mlx-lm adapter, gated against it (measured the same way)
        mark = daemon.last_id
        job = daemon.api("POST", "/api/train", json={}).json()["job"]["id"]
        started = daemon.wait_event(lambda e: e["type"] == "job.started" and e["job_id"] == job, 60, mark)
        assert started["warm_start"] is True
        again = daemon.wait_event(lambda e: e["type"] == "gate" and e.get("job_id") == job, 300, mark)
        assert again["reference_name"] == f"penwright@v{version}" and again["candidate"]["adapter_format"] == "mlx"
        assert again["reference"]["perplexity"] > 0 and again["reference"]["voice"]["own_ratio"] < 1.0  # v1, measured
        assert again["candidate"]["perplexity"] != again["reference"]["perplexity"]
        assert again["decision"] in ("promote", "reject") and again["reason"]
        print(
            f"\nMLX daemon loop: start to ready {t_ready - t0:.1f} s, save to live v{version} {t_live - t_save:.1f} s "
            f"(child: {took}), "
            f"start to the checked completions {t_done - t0:.1f} s, "
            f"warm retrain to its gate {time.monotonic() - t_done:.1f} s"
        )
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]
