"""Whole runs of the torch backend on CPU with builtin:tiny: artifacts, LoRA/DoRA/KL, stopping rules,
cancel, warm start, resume after kill -9, bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, write_dataset

from penwright.errors import DatasetError, ModelNotFoundError, SettingsError, TrainingError
from penwright.trainer.settings import ModelSettings, TrainingSettings
from penwright.trainer.train import next_rung, run_training

BASE = dict(
    rank=4,
    alpha=8,
    dropout=0.0,
    learning_rate=3e-3,
    max_seq_length=160,
    batch_size=2,
    warmup_steps=2,
    eval_every=5,
    save_every=5,
    max_steps=10,
)


def settings(**kw) -> TrainingSettings:
    return TrainingSettings(**{**BASE, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), paragraphs(EXAMPLE_MANUSCRIPT))


def read_log(run_dir: Path) -> list[dict]:
    with open(run_dir / "train_log.csv") as fh:
        return list(csv.DictReader(fh))


def test_lora_run_writes_every_artifact_and_learns(dataset, tiny_model_dir, tmp_path):
    from peft import PeftConfig

    seen = []
    result = run_training(
        dataset,
        settings(max_steps=8, keep_best=2, save_every=2, eval_every=2),
        tiny_model_dir,
        tmp_path / "run",
        on_progress=seen.append,
    )
    run = tmp_path / "run"
    assert result.status == "completed" and result.stop_reason == "max_steps" and result.steps == 8
    # progress reached the caller with the documented fields, step by step
    assert [p["step"] for p in seen] == list(range(1, 9))
    assert (
        set(seen[-1]) == {"step", "total", "loss", "eval_loss", "lr", "tokens_per_s", "eta_s"}
        and seen[-1]["total"] == 8
    )
    rows = read_log(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it learns the repeated text
    assert json.loads((run / "train_log.json").read_text())[-1]["step"] == 8
    tm = json.loads((run / "time_metrics.json").read_text())
    assert (
        tm["steps"] == 8 and tm["tokens_per_s"] > 0 and tm["peak_memory_bytes"] > 0 and tm["total_s"] >= tm["train_s"]
    )
    cfg = (run / "config.yaml").read_text()
    assert "rank: 4" in cfg and str(tiny_model_dir) in cfg
    # best two by eval loss plus the latest are kept
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "step-8" in ckpts and len(ckpts) <= 3
    # the adapter is a standard PEFT folder
    assert PeftConfig.from_pretrained(str(result.adapter_dir)).r == 4
    assert result.eval_loss is not None and result.best_eval_loss <= result.eval_loss + 1e-9


def test_dora_and_rslora_adapters(dataset, tiny_model_dir, tmp_path):
    from safetensors import safe_open

    r = run_training(
        dataset,
        settings(method="dora", rslora=True, max_steps=2, eval_every=None, targets="auto"),
        tiny_model_dir,
        tmp_path / "dora",
    )
    cfg = json.loads((r.adapter_dir / "adapter_config.json").read_text())
    assert cfg["use_dora"] is True and cfg["use_rslora"] is True
    assert set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with safe_open(str(r.adapter_dir / "adapter_model.safetensors"), "pt") as f:
        assert any("magnitude" in k for k in f.keys())


def _adapter_drift(adapter_dir: Path) -> float:
    from safetensors.torch import load_file

    w = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return float(sum((t.float() ** 2).sum() for k, t in w.items() if "lora_B" in k))


def test_kl_regulariser_keeps_the_adapter_closer_to_the_base(dataset, tiny_model_dir, tmp_path):
    plain = run_training(
        dataset, settings(max_steps=5, eval_every=None, learning_rate=1e-2), tiny_model_dir, tmp_path / "p"
    )
    kl = run_training(
        dataset,
        settings(max_steps=5, eval_every=None, learning_rate=1e-2, kl_lambda=20.0),
        tiny_model_dir,
        tmp_path / "k",
    )
    assert _adapter_drift(kl.adapter_dir) < _adapter_drift(plain.adapter_dir)
    assert (tmp_path / "k" / "config.yaml").read_text().count("kl_lambda: 20.0") == 1


def test_plateau_stop(dataset, tiny_model_dir, tmp_path):
    r = run_training(
        dataset,
        settings(
            max_steps=40,
            learning_rate=1e-9,
            warmup_steps=0,
            eval_every=None,
            plateau_patience=3,
            plateau_min_steps=4,
            plateau_min_delta=0.01,
        ),
        tiny_model_dir,
        tmp_path / "run",
    )
    assert r.stop_reason == "plateau" and r.status == "stopped" and 4 <= r.steps < 12


def test_time_cap_and_cancel(dataset, tiny_model_dir, tmp_path, monkeypatch):
    import penwright.trainer.train as T

    monkeypatch.setattr(T, "TIME_BUDGET_CHECKS", ())  # no planning from the pace: the hard cap itself must stop it
    monkeypatch.setattr(T, "TIME_BUDGET_EVERY", 10**9)
    r = run_training(
        dataset, settings(max_steps=500, max_minutes=0.02, eval_every=None), tiny_model_dir, tmp_path / "t"
    )
    assert r.stop_reason == "time_cap" and r.steps < 500 and (r.adapter_dir / "adapter_config.json").is_file()
    calls = []

    def stop() -> bool:  # the daemon's cancel flag, polled after every step
        calls.append(1)
        return len(calls) >= 3

    r2 = run_training(
        dataset, settings(max_steps=50, eval_every=None), tiny_model_dir, tmp_path / "c", should_stop=stop
    )
    assert r2.status == "cancelled" and r2.steps == 3
    # a cancelled run resumes where it stopped
    r3 = run_training(dataset, settings(max_steps=5, eval_every=None), tiny_model_dir, tmp_path / "c")
    assert (
        r3.status == "completed"
        and r3.steps == 5
        and [int(x["step"]) for x in read_log(tmp_path / "c")] == [1, 2, 3, 4, 5]
    )


def test_warm_start_from_an_adapter(dataset, tiny_model_dir, tmp_path):
    first = run_training(dataset, settings(max_steps=6, eval_every=None), tiny_model_dir, tmp_path / "a")
    cold = run_training(
        dataset, settings(max_steps=1, eval_every=None, learning_rate=1e-9), tiny_model_dir, tmp_path / "b"
    )
    warm = run_training(
        dataset,
        settings(max_steps=1, eval_every=None, learning_rate=1e-9),
        tiny_model_dir,
        tmp_path / "c",
        init_adapter=first.adapter_dir,
    )
    assert float(read_log(tmp_path / "c")[0]["loss"]) < float(read_log(tmp_path / "b")[0]["loss"]) - 0.05
    assert warm.status == cold.status == "completed"


RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from penwright.trainer.settings import TrainingSettings
    from penwright.trainer.train import run_training
    ds, model, run, extra = sys.argv[1:5]
    s = TrainingSettings.model_validate_json(extra)

    def hold_after_step_4() -> bool:
        # polled after every step: once step 4's checkpoint is on disk, wait there for the test's SIGKILL,
        # so the kill lands mid-run however fast the machine is
        while (Path(run) / "checkpoints" / "step-4").is_dir():
            time.sleep(0.05)
        return False

    run_training(Path(ds), s, model, Path(run), should_stop=hold_after_step_4)
    """
)


def test_resume_after_kill_matches_an_uninterrupted_run(dataset, tiny_model_dir, tmp_path):
    s = settings(max_steps=8, save_every=2, eval_every=None)
    straight = run_training(dataset, s, tiny_model_dir, tmp_path / "straight")
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(dataset), str(tiny_model_dir), str(run), s.model_dump_json()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "step-4").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "trainer ended before its second checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith("."))
    assert "step-8" not in done and not (run / "result.json").exists()
    resumed = run_training(dataset, s, tiny_model_dir, run)
    assert resumed.steps == 8 and resumed.status == "completed"
    a, b = read_log(tmp_path / "straight"), read_log(run)
    assert [int(r["step"]) for r in b] == list(range(1, 9))
    assert [float(r["loss"]) for r in b] == pytest.approx([float(r["loss"]) for r in a], rel=1e-4)
    assert _adapter_drift(resumed.adapter_dir) == pytest.approx(_adapter_drift(straight.adapter_dir), rel=1e-4)


def test_half_written_checkpoint_is_ignored(dataset, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    run_training(dataset, settings(max_steps=3, save_every=3, eval_every=None), tiny_model_dir, run)
    broken = run / "checkpoints" / ".tmp-step-6"
    broken.mkdir()
    (broken / "state.pt").write_bytes(b"\x00" * 10)  # a kill during the write of step 6
    r = run_training(dataset, settings(max_steps=6, save_every=3, eval_every=None), tiny_model_dir, run)
    assert r.steps == 6 and not broken.exists()


def test_bad_input_gives_clear_errors(dataset, tiny_model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.jsonl").write_text("")
    with pytest.raises(DatasetError, match="no usable rows"):
        run_training(empty, settings(), tiny_model_dir, tmp_path / "r1")
    with pytest.raises(DatasetError, match="curate"):
        run_training(tmp_path / "nowhere", settings(), tiny_model_dir, tmp_path / "r2")
    tiny = write_dataset(tmp_path / "tiny", paragraphs(EXAMPLE_MANUSCRIPT)[:1], n_valid=0)  # one row, no valid
    one = run_training(tiny, settings(max_steps=2), tiny_model_dir, tmp_path / "r0")
    assert one.steps == 2 and one.eval_loss is None and (one.adapter_dir / "adapter_config.json").is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(DatasetError) as err:
        run_training(bad, settings(), tiny_model_dir, tmp_path / "r3")
    assert "train.jsonl:1" in str(err.value) and "train.jsonl:2" in str(err.value)
    with pytest.raises(ModelNotFoundError):
        run_training(dataset, settings(), tmp_path / "no-model", tmp_path / "r4")
    manifest = tmp_path / "mismatch"
    write_dataset(manifest, paragraphs(EXAMPLE_MANUSCRIPT)[:6], n_valid=0)
    (manifest / "manifest.json").write_text(json.dumps({"tokenizer": {"fingerprint": "0123456789abcdef"}}))
    with pytest.raises(DatasetError, match="different tokenizer"):
        run_training(manifest, settings(), tiny_model_dir, tmp_path / "r5")
    # curation records the tokenizer's folder: another model's tokenizer is caught too
    import shutil

    from penwright.trainer.tiny import build_tiny_model

    other_tiny = build_tiny_model(["An entirely different book about ships and the sea. " * 30], tmp_path / "m")
    other = shutil.copytree(other_tiny, tmp_path / "other-model")
    (manifest / "manifest.json").write_text(json.dumps({"tokenizer": str(other)}))
    with pytest.raises(DatasetError, match="different tokenizer"):
        run_training(manifest, settings(), tiny_model_dir, tmp_path / "r5")
    # two builds of builtin:tiny (the manuscript grew since curation) only warn: the text is re-tokenized
    (manifest / "manifest.json").write_text(json.dumps({"tokenizer": str(other_tiny)}))
    assert run_training(manifest, settings(max_steps=1, eval_every=None), tiny_model_dir, tmp_path / "r6b").steps == 1
    (manifest / "manifest.json").write_text(json.dumps({"tokenizer": str(tiny_model_dir)}))
    assert run_training(manifest, settings(max_steps=1, eval_every=None), tiny_model_dir, tmp_path / "r7").steps == 1
    with pytest.raises(TrainingError, match="CUDA"):
        run_training(dataset, settings(quantization="4bit"), tiny_model_dir, tmp_path / "r6")
    for bad_value in ({"rank": 0}, {"learning_rate": -1e-4}):
        from penwright.trainer.presets import load_training_settings

        with pytest.raises(SettingsError):
            load_training_settings("fast", overrides=bad_value)


def test_oom_ladder_rungs():
    s = TrainingSettings(rank=64, alpha=128, batch_size=4, grad_accumulation=1, max_seq_length=2048)
    rungs = []
    while (step := next_rung(s)) is not None:
        s, rung = step
        rungs.append(rung)
    assert rungs == ["gradient_checkpointing", "batch_2", "batch_1", "rank_32", "rank_16", "seq_1024"]
    assert (s.batch_size, s.grad_accumulation, s.rank, s.scale, s.max_seq_length) == (1, 4, 16, 2.0, 1024)


def test_backend_choice():
    from penwright.trainer.backends import pick_backend

    assert pick_backend("auto") == "cpu" and pick_backend("cpu") == "cpu"
    with pytest.raises(TrainingError, match="CUDA"):
        pick_backend("cuda")
    assert ModelSettings().backend == "auto"


def test_plateau_ignores_a_lucky_first_batch_and_stops_on_a_flat_loss():
    from penwright.trainer.stopping import Plateau

    p = Plateau(smoothing=0.9, min_delta=0.005, patience=20, min_steps=20)
    falling = [3.5] + [3.9 - 0.01 * i for i in range(60)]  # a lucky first batch, then a slow steady descent
    assert not any(p.update(step, loss) for step, loss in enumerate(falling, 1))
    flat = Plateau(smoothing=0.9, min_delta=0.005, patience=5, min_steps=8)
    stops = [flat.update(step, 2.0) for step in range(1, 40)]
    assert stops.index(True) + 1 == 13  # best fixed at step 8 (min of min_steps and the average's warm-up), +5


def test_a_time_budget_shortens_the_schedule_to_what_fits(dataset, tiny_model_dir, tmp_path, monkeypatch):
    """With max_minutes, the pace of the first steps sets the run's length, so the learning rate ends decayed
    instead of a time cap cutting the run off at full rate."""
    import penwright.trainer.train as T

    monkeypatch.setattr(T, "TIME_BUDGET_CHECKS", (2,))
    result = run_training(
        dataset,
        settings(max_steps=100_000, max_minutes=0.1, warmup_steps=1, save_every=10**6, eval_every=None),
        tiny_model_dir,
        tmp_path / "run",
    )
    log = read_log(tmp_path / "run")
    assert 2 < result.total_steps < 100_000  # planned from the measured pace
    assert result.stop_reason in ("max_steps", "time_cap")  # time_cap only if this machine slowed down a lot mid-run
    if result.stop_reason == "max_steps":
        s = settings()
        assert result.steps == result.total_steps
        assert float(log[-1]["lr"]) <= s.learning_rate * (s.min_lr_ratio + 0.2)  # the cosine reached its floor
