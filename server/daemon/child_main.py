"""The training child: `python -m penwright.server.daemon.child_main SPEC.json`.

Trains (penwright.trainer.train.run_training), then measures the candidate and
its reference (the live adapter, or the base for the first adapter) on the
fixed held-out split for the gate. Talks to the daemon only through stdout,
one JSON object per line. Never publishes anything: the daemon does, after
reading a complete result.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from penwright.trainer.backends.formats import adapter_format, mlx_to_peft

_out_lock = threading.Lock()


def emit(event: str, **fields) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        sys.stdout.flush()


def _watch_parent() -> None:
    """Die when the daemon is gone (the Linux parent-death signal covers most cases; this covers the rest)."""
    parent = int(os.environ.get("PENWRIGHT_PARENT_PID", "0") or 0)
    if not parent:
        return

    def loop() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=loop, daemon=True).start()


def _limit_threads() -> None:
    """Leave CPU for serving completions: the daemon answers the author first."""
    from penwright.server.daemon.child import train_threads

    try:
        import torch

        torch.set_num_threads(train_threads())
    except ImportError:
        pass


def train(spec: dict) -> dict:
    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.settings import ModelSettings
    from penwright.trainer.train import run_training

    settings = load_training_settings(spec["preset"], spec.get("overrides") or {}, Path(spec["project_root"]))

    def on_progress(p: dict) -> None:
        emit("progress", **{k: p.get(k) for k in ("step", "total", "loss", "eval_loss", "lr", "tokens_per_s", "eta_s")})

    result = run_training(
        Path(spec["dataset_dir"]),
        settings,
        spec["base_model"],
        Path(spec["run_dir"]),
        model_settings=ModelSettings(**spec["model"]),
        on_progress=on_progress,
        should_stop=lambda: False,
        init_adapter=Path(spec["init_adapter"]) if spec.get("init_adapter") else None,
    )  # the same run_dir again resumes from its latest checkpoint
    return _as_dict(result)


def _as_dict(result) -> dict:
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_dict"):
        return result.to_dict()
    from dataclasses import asdict, is_dataclass

    return asdict(result) if is_dataclass(result) else dict(vars(result))


def measure(spec: dict, adapter_dir: Path) -> tuple[dict, dict]:
    """The voice measures (trainer.evaluate.voice) of the candidate and its reference (the live adapter, or the base
    for the first adapter), each with its change from the base; one model in memory, adapters switched.

    Every side is measured on torch, whatever trained it: an mlx-lm adapter's weights are moved into a PEFT LoRA of
    the same base (`as_peft`: the same numbers, transposed), so the candidate, its reference and the base are
    measured by one implementation of the measures, seeds and sampling included. Measured natively on MLX, a
    candidate would be compared with a reference and a base measured by another framework's kernels and sampler,
    and the cached base figures would depend on which backend trained last."""
    from peft import PeftModel

    from penwright.trainer.evaluate.gate import gate_voice_metrics
    from penwright.trainer.evaluate.model import load_model, pick_device
    from penwright.trainer.evaluate.voice import compare, inputs_from_dataset

    scratch = Path(spec["run_dir"]) / "gate"
    inputs, notes = inputs_from_dataset(Path(spec["dataset_dir"]), n_samples=int(spec["gate_samples"]))
    device = pick_device()  # the GPU when there is one (bf16): on an H200 the gate ran on the CPU and took 100 s
    base, tok = load_model(spec["base_model"], device=device)
    candidate_dir = as_peft(adapter_dir, scratch / "candidate", spec["base_model"])
    model = PeftModel.from_pretrained(base, str(candidate_dir), adapter_name="candidate").to(device)
    model.eval()
    candidate = gate_voice_metrics(model, tok, inputs)
    cache = Path(spec["run_dir"]).parent / "base-voice.json"  # the base's figures are the same for every run
    key = f"{inputs.fingerprint(spec['base_model'])}:{device}"  # bf16 on a GPU, fp32 on the CPU
    base_metrics = _cached(cache, key)
    if base_metrics is None:
        with model.disable_adapter():
            base_metrics = gate_voice_metrics(model, tok, inputs)
        _store(cache, key, base_metrics)
    reference = base_metrics
    if spec.get("reference_adapter"):
        reference_dir = as_peft(Path(spec["reference_adapter"]), scratch / "reference", spec["base_model"])
        model.load_adapter(str(reference_dir), adapter_name="reference")
        model.set_adapter("reference")
        reference = gate_voice_metrics(model, tok, inputs)
    candidate["voice"], reference["voice"] = compare(candidate, base_metrics), compare(reference, base_metrics)
    candidate["notes"] = notes
    candidate["demo_base"] = Path(spec["base_model"]).name.startswith("tiny-")  # builtin:tiny, built per project
    candidate["adapter_format"] = adapter_format(adapter_dir) or "unknown"  # measured as PEFT on torch either way
    return _plain(candidate), _plain(reference)


def as_peft(adapter_dir: Path, scratch: Path, base_model: str) -> Path:
    """A PEFT folder with `adapter_dir`'s weights: itself, or an mlx-lm adapter converted into `scratch`."""
    return mlx_to_peft(adapter_dir, scratch, base_model) if adapter_format(adapter_dir) == "mlx" else adapter_dir


def _cached(path: Path, key: str) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("metrics") if isinstance(data, dict) and data.get("key") == key else None


def _store(path: Path, key: str, metrics: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"key": key, "metrics": _plain(metrics)}))
        os.replace(tmp, path)
    except OSError:  # a cache: the next gate measures the base again
        pass


def _plain(metrics: dict) -> dict:
    return {
        k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (bool, int)) else v)
        for k, v in metrics.items()
        if isinstance(v, (int, float, str, bool, list, dict)) or hasattr(v, "__float__")
    }


def standby() -> str | None:
    """`--standby`: import what training needs, then wait for the spec's path on stdin (None: the daemon is gone,
    or closed the standby without a job)."""
    try:
        import torch  # noqa: F401

        from penwright.trainer.train import import_heavy

        import_heavy()
    except ImportError:  # an install without them: the job reports what is missing, as a fresh child would
        pass
    return sys.stdin.readline().strip() or None


def main(argv: list[str]) -> int:
    _watch_parent()
    if argv == ["--standby"]:
        path = standby()
        if path is None:
            return 0
        argv = [path]
    spec = json.loads(Path(argv[0]).read_text())
    _limit_threads()
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        emit("phase", phase="train")
        result = train(spec)
        timings["train_s"] = time.perf_counter() - t0
        if result.get("status") == "cancelled":
            emit("error", message="training stopped before the end; nothing was published")
            return 5
        adapter_dir = Path(result.get("adapter_dir") or Path(spec["run_dir"]) / "adapter")
        emit("phase", phase="gate")
        t1 = time.perf_counter()
        metrics, reference = measure(spec, adapter_dir)
        timings["gate_eval_s"] = time.perf_counter() - t1
        metrics["eval_loss"] = result.get("eval_loss")
        metrics["gate_samples"] = int(spec["gate_samples"])
        emit(
            "result",
            run_id=spec["run_id"],
            adapter_dir=str(adapter_dir),
            base_model=spec["base_model"],
            dataset_hash=spec.get("dataset_hash"),
            metrics={**metrics, "train": _summary(result)},
            reference=reference,
            reference_name=spec.get("reference_name", "base"),
            timings=timings,
        )
        return 0
    except Exception as err:
        if _disk_full(err, Path(spec["run_dir"])):
            emit(
                "error",
                message=f"the disk is full under {spec['run_dir']} (while writing a checkpoint or log): "
                "free some space and retrain; the live adapter and the job queue are unaffected",
            )
            return 4
        emit("error", message=str(err) or type(err).__name__, traceback=traceback.format_exc()[-2000:])
        return 1


def _disk_full(err: BaseException, folder: Path) -> bool:
    """ENOSPC, however the library wrapped it (torch.save says only "file write failed")."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "file write failed" in str(err) or "No space left" in str(err):
            return True
        err = err.__cause__ or err.__context__
    try:
        import shutil

        return shutil.disk_usage(folder).free < 256 * 1024
    except OSError:
        return False


def _summary(result: dict) -> dict:
    keep = ("steps", "total_steps", "train_loss", "best_eval_loss", "eval_loss", "stop_reason", "status", "backend")
    keep += ("adapter_format",)  # peft | mlx: what the registry serves
    return {k: result.get(k) for k in keep if k in result and isinstance(result.get(k), (int, float, str, type(None)))}


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Everything is written (the run folder's files atomically, the result on stdout): leave without Python's
    # teardown, which on a GPU frees the model and the CUDA context one object at a time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
