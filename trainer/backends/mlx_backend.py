"""MLX backend: mlx-lm's LoRA/DoRA tuner driven from Python (Apple Silicon; Linux with mlx[cpu]).

Same dataset files as the torch backend, tokenized by the same code (`trainer.data.encode_split`: inline rows
in the shared prompt format, chat rows through the chat template), handed to mlx-lm as (tokens, prompt
offset) pairs with `mask_prompt` for completion-only loss. Writes an mlx-lm adapter folder
(`adapter_config.json` + `adapters.safetensors`) loadable by `mlx_lm.load(...,
adapter_path=)`, `mlx_lm.server --adapter-path` and `mlx_lm.fuse`. A quantized MLX
base (e.g. a 4-bit conversion) trains as QLoRA as is. Progress, cancel and the
time cap go through mlx-lm's training callback; resume restarts from the latest
saved adapter weights (mlx-lm keeps no optimizer state).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from penwright.errors import DatasetError, ModelNotFoundError
from penwright.trainer import data as D
from penwright.trainer.epilogue import RunEnd, finish_run
from penwright.trainer.runs import Clock, RunDir, RunResult
from penwright.trainer.settings import ModelSettings, TrainingSettings
from penwright.trainer.stopping import Plateau

log = logging.getLogger(__name__)
ATTN_KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
MLP_KEYS = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


class _Stop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def lora_keys(model, targets: str) -> list[str]:
    import mlx.nn as nn

    present = {k for k, m in model.layers[0].named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))}
    if targets == "auto":
        return sorted(present)
    wanted = ATTN_KEYS if targets == "attn" else ATTN_KEYS + MLP_KEYS
    return [k for k in wanted if k in present] or sorted(present)


def adapter_config(settings: TrainingSettings, keys: list[str], num_layers: int, base_model: str) -> dict:
    """mlx-lm's adapter_config.json (note `scale`, not `alpha`)."""
    return {
        "fine_tune_type": "dora" if settings.method == "dora" else "lora",
        "num_layers": num_layers,
        "lora_parameters": {"rank": settings.rank, "scale": settings.scale, "dropout": settings.dropout, "keys": keys},
        "model": base_model,
        "mask_prompt": settings.completion_only,
        "max_seq_length": settings.max_seq_length,
    }


class _Callback:
    """mlx-lm TrainingCallback: forwards progress, logs rows, applies cancel/time cap/plateau."""

    def __init__(self, settings, total, on_progress, should_stop, clock, start_step):
        self.s, self.total, self.on_progress, self.should_stop, self.clock = (
            settings,
            total,
            on_progress,
            should_stop,
            clock,
        )
        self.start_step, self.rows, self.eval_loss = start_step, [], None
        self.plateau = Plateau(
            settings.plateau_smoothing,
            settings.plateau_min_delta,
            settings.plateau_patience,
            settings.plateau_min_steps,
        )
        self.tokens = 0

    def on_val_loss_report(self, info: dict) -> None:
        self.eval_loss = float(info["val_loss"])

    def on_train_loss_report(self, info: dict) -> None:
        step, loss = self.start_step + int(info["iteration"]), float(info["train_loss"])
        self.tokens = int(info["trained_tokens"])
        row = {
            "step": step,
            "loss": round(loss, 6),
            "eval_loss": self.eval_loss,
            "lr": float(info["learning_rate"]),
            "grad_norm": None,
            "tokens_per_s": round(float(info["tokens_per_second"]), 1),
            "elapsed_s": round(self.clock.train_elapsed(), 3),
        }
        self.rows.append(row)
        rate = (step - self.start_step) / max(self.clock.train_elapsed(), 1e-9)
        if self.on_progress:
            self.on_progress(
                {
                    "step": step,
                    "total": self.total,
                    "loss": loss,
                    "eval_loss": self.eval_loss,
                    "lr": row["lr"],
                    "tokens_per_s": row["tokens_per_s"],
                    "eta_s": (self.total - step) / max(rate, 1e-9),
                }
            )
        self.eval_loss = None
        self._check(step, loss)

    def _check(self, step: int, loss: float) -> None:
        s = self.s
        if self.should_stop and self.should_stop():
            raise _Stop("cancelled")
        if s.max_minutes is not None and self.clock.train_elapsed() >= s.max_minutes * 60:
            raise _Stop("time_cap")
        if self.plateau.update(step, loss):
            raise _Stop("plateau")


def _datasets(dataset_dir: Path, tokenizer, settings: TrainingSettings, max_len: int):
    """Rows tokenized exactly as the torch backend does (same masking, same truncation that keeps the target),
    handed to mlx-lm as (tokens, prompt offset) pairs; also the training split's SplitStats."""

    def split(name: str, optional: bool, limit: int | None = None):
        path = dataset_dir / name
        if optional and not path.is_file():
            return None, None
        samples, stats = D.encode_split(path, tokenizer, max_len, settings.completion_only, limit)
        return [(s.input_ids, len(s) - s.n_targets) for s in samples], stats  # offset = prompt length

    if not (dataset_dir / "train.jsonl").is_file():
        raise DatasetError(f"{dataset_dir / 'train.jsonl'} does not exist.", "Run `penwright curate` first.")
    train, stats = split("train.jsonl", optional=False)
    if len(train) < settings.batch_size:
        raise DatasetError(
            f"{dataset_dir / 'train.jsonl'} has fewer usable rows than one batch ({settings.batch_size}).",
            "Write more, or lower batch_size.",
        )
    valid, _ = split("valid.jsonl", optional=True, limit=settings.eval_max_rows)
    return train, (valid if valid and len(valid) >= settings.batch_size else None), stats


def load_model(base_model: str, adapter_path: Path | None = None):
    from mlx_lm import load

    if not (Path(base_model) / "config.json").is_file():
        raise ModelNotFoundError(base_model, "the MLX backend needs a local model folder")
    return load(base_model, adapter_path=str(adapter_path) if adapter_path else None)


def _resume_point(live: Path) -> tuple[int, Path | None]:
    saved = sorted(live.glob("[0-9]*_adapters.safetensors"))
    return (int(saved[-1].name.split("_", 1)[0]), saved[-1]) if saved else (0, None)


def _start_weights(model, resume_file: Path | None, init_adapter: Path | None) -> None:
    """Resume from this run's latest saved weights, else warm-start from `init_adapter` (an mlx-lm adapter, or a
    PEFT one trained with torch: the same weights in mlx-lm's layout, trainer/backends/formats.py)."""
    from penwright.trainer.backends.formats import adapter_format, peft_to_mlx

    if resume_file is not None:
        model.load_weights(str(resume_file), strict=False)
    elif init_adapter is not None and adapter_format(init_adapter) == "peft":
        model.load_weights(list(peft_to_mlx(init_adapter)[1].items()), strict=False)
    elif init_adapter is not None:
        model.load_weights(str(Path(init_adapter) / "adapters.safetensors"), strict=False)


def _precision(model) -> str:
    from mlx.utils import tree_flatten

    names = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    dtypes = [str(v.dtype).rsplit(".", 1)[-1] for _, v in tree_flatten(model.parameters())]
    return next((names[d] for d in dtypes if d in names), dtypes[0] if dtypes else "?")


class MlxTraining:
    """The TrainingBackend (trainer/backends/contracts.py) of mlx-lm's tuner."""

    name = "mlx"
    adapter_format = "mlx"

    def train(
        self, dataset_dir, settings, base_model, run_dir, *, model_settings, on_progress, should_stop, init_adapter
    ) -> RunResult:
        return run_mlx_training(
            dataset_dir,
            settings,
            base_model,
            run_dir,
            model_settings=model_settings,
            on_progress=on_progress,
            should_stop=should_stop,
            init_adapter=init_adapter,
        )


def run_mlx_training(
    dataset_dir: Path,
    settings: TrainingSettings,
    base_model: str,
    run_dir: Path,
    *,
    model_settings: ModelSettings | None = None,
    on_progress: Callable | None = None,
    should_stop: Callable | None = None,
    init_adapter: Path | str | None = None,
) -> RunResult:
    """Train with mlx-lm's tuner; same contract as `penwright.trainer.train.run_training`."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import linear_to_lora_layers

    clock, run = Clock(), RunDir(run_dir)
    model_settings = model_settings or ModelSettings()
    max_len = settings.max_seq_length or model_settings.max_context_tokens
    mx.random.seed(settings.seed)
    model, tokenizer = load_model(base_model)
    model.freeze()
    keys = lora_keys(model, settings.targets)
    num_layers = len(model.layers) if settings.mlx_num_layers < 0 else settings.mlx_num_layers
    config = adapter_config(settings.model_copy(update={"max_seq_length": max_len}), keys, num_layers, base_model)
    linear_to_lora_layers(model, num_layers, config["lora_parameters"], use_dora=settings.method == "dora")
    live = run.path / "mlx_adapter"
    live.mkdir(exist_ok=True)
    (live / "adapter_config.json").write_text(json.dumps(config, indent=1))
    done, resume_file = _resume_point(live)
    _start_weights(model, resume_file, Path(init_adapter) if init_adapter else None)
    train_set, valid_set, stats = _datasets(dataset_dir, tokenizer._tokenizer, settings, max_len)
    total = settings.max_steps or max(1, int(settings.epochs * len(train_set) / settings.batch_size))
    resolved = {"training": settings.model_dump(), "model": model_settings.model_dump(), "base_model": base_model}
    resolved.update(dataset_dir=str(dataset_dir), backend="mlx", adapter_config=config, total_steps=total)
    run.write_config(resolved)
    callback = _Callback(settings, total, on_progress, should_stop, clock, done)
    reason, weights, eval_loss = _train(model, settings, train_set, valid_set, live, done, total, max_len, callback)
    steps = callback.rows[-1]["step"] if callback.rows else done
    if callback.rows and eval_loss is not None:
        callback.rows[-1]["eval_loss"] = eval_loss
    end = RunEnd(
        reason=reason,
        steps=steps,
        total_steps=total,
        train_loss=callback.plateau.ema,
        eval_loss=eval_loss,
        best_eval_loss=eval_loss,
        backend="mlx",
        adapter_format="mlx",
        log=callback.rows,
        train_s=clock.train_elapsed(),
        tokens=callback.tokens,
        peak_memory_bytes=int(mx.get_peak_memory()),
        precision=_precision(model),
        train_rows=len(train_set),
        truncated_rows=stats.truncated,
    )
    return finish_run(run, end, lambda folder: _write_adapter(folder, live, weights), clock)


def _write_adapter(folder: Path, live: Path, weights: dict) -> None:
    """An mlx-lm adapter folder: this run's adapter_config.json and the weights."""
    import mlx.core as mx

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text((live / "adapter_config.json").read_text())
    mx.save_safetensors(str(folder / "adapters.safetensors"), weights)


def _train(model, settings, train_set, valid_set, live: Path, done: int, total: int, max_len: int, callback):
    """mlx-lm's training loop from step `done` to `total` (or a stop); then the weights are saved as this run's
    resume point and the held-out loss measured. Returns (stop reason, adapter weights, eval loss or None)."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train
    from mlx_lm.tuner.utils import build_schedule

    iters = max(total - done, 0)
    warm = min(settings.warmup_steps, max(0, iters // 2))
    lr = (
        build_schedule(
            {
                "name": "cosine_decay",
                "warmup": warm,
                "arguments": [settings.learning_rate, max(iters, 1), settings.learning_rate * settings.min_lr_ratio],
            }
        )
        if settings.schedule == "cosine"
        else settings.learning_rate
    )
    args = TrainingArgs(
        batch_size=settings.batch_size,
        iters=iters,
        val_batches=-1,
        steps_per_report=settings.log_every,
        steps_per_eval=settings.eval_every or 10**9,
        steps_per_save=settings.save_every,
        max_seq_length=max_len,
        adapter_file=str(live / "adapters.safetensors"),
        grad_checkpoint=settings.checkpoint_fraction > 0,
        grad_accumulation_steps=settings.grad_accumulation,
    )
    callback.clock.begin_training()
    reason = "max_steps" if settings.max_steps else "epochs"
    try:
        if iters:
            optimizer = optim.AdamW(learning_rate=lr, weight_decay=settings.weight_decay)
            train(model, optimizer, train_set, valid_set, args=args, training_callback=callback)
    except _Stop as stop:
        reason = stop.reason
    steps = callback.rows[-1]["step"] if callback.rows else done
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(live / f"{steps:07d}_adapters.safetensors"), weights)  # resume point, also after a stop
    eval_loss = None
    if valid_set is not None:
        eval_loss = float(
            evaluate(model, valid_set, batch_size=settings.batch_size, num_batches=-1, max_seq_length=max_len)
        )
    return reason, weights, eval_loss


def generate(base_model: str, adapter_dir: Path | None, prompt: str, max_tokens: int = 32) -> str:
    """Greedy text from the base (plus an mlx adapter): used by tests and `penwright export --format mlx` checks."""
    from mlx_lm import generate as mlx_generate

    model, tokenizer = load_model(base_model, adapter_dir)
    return mlx_generate(model, tokenizer, prompt=prompt, max_tokens=max_tokens, verbose=False)
