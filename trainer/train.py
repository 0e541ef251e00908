"""`run_training`: the one entry point the daemon and the CLI call.

    result = run_training(dataset_dir, settings, base_model_path, run_dir,
                          model_settings=..., on_progress=print, should_stop=lambda: False,
                          init_adapter=None)

Reads `train.jsonl`/`valid.jsonl` from `dataset_dir`, trains an adapter into
`run_dir` (checkpoints, logs, time metrics, resolved config) and returns a
RunResult whose `adapter_dir` is ready to publish in the Registry. Calling it again
on the same `run_dir` resumes from the latest complete checkpoint (after a crash,
a kill -9 or a cancel). The loop reads top to bottom in `_Loop.run`.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from penwright.errors import DatasetError, TrainingError
from penwright.trainer import data as D
from penwright.trainer.backends import pick_backend
from penwright.trainer.backends.contracts import TrainingBackend
from penwright.trainer.epilogue import RunEnd, finish_run
from penwright.trainer.runs import Clock, RunDir, RunResult
from penwright.trainer.settings import ModelSettings, TrainingSettings
from penwright.trainer.stopping import Plateau

log = logging.getLogger(__name__)
Progress = Callable[[dict], None]
TIME_BUDGET_CHECKS = (4, 12)  # steps after which the pace is measured (the first includes warm-up)
TIME_BUDGET_EVERY = 20  # and again every this many steps, as other programs come and go
TIME_BUDGET_SHARE = 0.9  # of max_minutes planned, so a slower stretch still ends the schedule before the cap


def run_training(
    dataset_dir: Path | str,
    settings: TrainingSettings,
    base_model_path: str | Path,
    run_dir: Path | str,
    *,
    model_settings: ModelSettings | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    init_adapter: Path | str | None = None,
) -> RunResult:
    """Train (or resume) one run. Raises DatasetError / TrainingError / ModelNotFoundError with what to fix."""
    from penwright.trainer.reporting import reporter

    report = reporter(settings.report_to, run_dir)
    try:
        return _run_training(
            dataset_dir,
            settings,
            base_model_path,
            run_dir,
            model_settings,
            report.wrap(on_progress) if report else on_progress,
            should_stop,
            init_adapter,
        )
    finally:
        if report is not None:
            report.close()


def _run_training(
    dataset_dir,
    settings: TrainingSettings,
    base_model_path,
    run_dir,
    model_settings,
    on_progress,
    should_stop,
    init_adapter,
) -> RunResult:
    model_settings = model_settings or ModelSettings()
    trainer = training_backend(pick_backend(model_settings.backend))
    return trainer.train(
        Path(dataset_dir),
        settings,
        str(base_model_path),
        Path(run_dir),
        model_settings=model_settings,
        on_progress=on_progress,
        should_stop=should_stop,
        init_adapter=Path(init_adapter) if init_adapter else None,
    )


def training_backend(name: str) -> TrainingBackend:
    """The TrainingBackend (trainer/backends/contracts.py) for a picked backend name."""
    if name == "mlx":
        from penwright.trainer.backends.mlx_backend import MlxTraining

        return MlxTraining()
    return TorchTraining(name)


def import_heavy() -> None:
    """transformers' model classes and peft: the seconds every training process pays before it loads a model."""
    import peft  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401


class TorchTraining:
    """The step loop below (`_Loop`) on torch, on CUDA retried down the OOM ladder."""

    adapter_format = "peft"

    def __init__(self, device: str):
        self.name = device

    def train(
        self, dataset_dir, settings, base_model, run_dir, *, model_settings, on_progress, should_stop, init_adapter
    ) -> RunResult:
        init_adapter = peft_adapter(init_adapter, Path(run_dir) / "init_adapter")
        rung, history = None, []
        while True:
            try:
                loop = _Loop(
                    dataset_dir,
                    settings,
                    base_model,
                    RunDir(run_dir),
                    model_settings,
                    self.name,
                    on_progress,
                    should_stop,
                    init_adapter,
                )
                return loop.run(oom_rungs=history)
            except Exception as err:  # noqa: BLE001 - only CUDA OOM is retried, everything else re-raised
                if not (_is_oom(err) and self.name == "cuda" and settings.oom_ladder):
                    raise
                step = next_rung(settings)
                if step is None:
                    raise TrainingError(
                        "Out of GPU memory even at the lowest memory settings.",
                        "Use a smaller base model or quantization: 4bit.",
                    ) from err
                settings, rung = step
                history.append(rung)
                log.warning("CUDA out of memory; retrying with %s", rung)
                _free_cuda()


def peft_adapter(adapter: Path | None, scratch: Path) -> Path | None:
    """A warm start's adapter as a PEFT folder: itself, or an mlx-lm adapter's weights converted into `scratch`."""
    from penwright.trainer.backends.formats import adapter_format, mlx_to_peft

    if adapter is None or adapter_format(adapter) != "mlx":
        return adapter
    return mlx_to_peft(adapter, scratch)


def _is_oom(err: Exception) -> bool:
    try:
        import torch

        return isinstance(err, torch.cuda.OutOfMemoryError)
    except ImportError:
        return False


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def next_rung(s: TrainingSettings) -> tuple[TrainingSettings, str] | None:
    """The OOM ladder: checkpointing, then halve the batch (doubling accumulation), then rank 64->32->16
    keeping alpha/rank, then cap rows at 1024 tokens. None when nothing is left to give."""
    if s.checkpoint_fraction < 1:  # none or some layers: all of them
        return s.model_copy(update={"gradient_checkpointing": True}), "gradient_checkpointing"
    if s.batch_size > 1:
        b = s.batch_size // 2
        return s.model_copy(update={"batch_size": b, "grad_accumulation": s.grad_accumulation * 2}), f"batch_{b}"
    if s.rank > 16:
        r = 32 if s.rank > 32 else 16
        return s.model_copy(update={"rank": r, "alpha": s.scale * r}), f"rank_{r}"
    if s.max_seq_length is None or s.max_seq_length > 1024:
        return s.model_copy(update={"max_seq_length": 1024}), "seq_1024"
    return None


def plateau_settings(s: TrainingSettings) -> dict:
    return {
        "smoothing": s.plateau_smoothing,
        "min_delta": s.plateau_min_delta,
        "patience": s.plateau_patience,
        "min_steps": s.plateau_min_steps,
    }


def lr_factor(step: int, total: int, s: TrainingSettings) -> float:
    """Linear warmup, then cosine down to min_lr_ratio (or constant)."""
    warm = min(s.warmup_steps, max(0, total // 2))  # a short run still gets most of its steps at full rate
    if step < warm:
        return (step + 1) / (warm + 1)
    if s.schedule == "constant":
        return 1.0
    progress = (step - warm) / max(1, total - warm)
    return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def optimizer_step(backend, opt, batches: list[dict], s: TrainingSettings) -> tuple[float, float]:
    """One optimizer step over micro-batches: (token-mean CE over all of them, grad norm before clipping).
    Each micro-batch's summed loss is divided by the step's total target count, so accumulation
    gives exactly the loss of one big batch."""
    import torch

    n_targets = sum(int((b["labels"] != D.IGNORE).sum()) for b in batches)
    total_ce = torch.zeros((), device=backend.device)
    for b in batches:
        ce, kl, _ = backend.loss_sums(b)
        loss = ce if kl is None else ce + s.kl_lambda * s.kl_tau**2 * kl
        (loss / max(n_targets, 1)).backward()
        total_ce += ce.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(backend.trainable_parameters(), s.max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(total_ce) / max(n_targets, 1), float(grad_norm)


def make_optimizer(params, s: TrainingSettings, device: str):
    import torch

    fused = device == "cuda"  # one kernel for all adapter tensors instead of a loop of small ones
    return torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay, fused=fused)


@dataclass
class LoopState:
    """Everything a resume needs besides weights and optimizer: saved in each checkpoint's state.pt."""

    step: int = 0
    micro: int = 0  # micro-batches consumed: the data position
    plateau: dict = field(default_factory=dict)  # Plateau fields
    best_eval: float | None = None
    evals_since_best: int = 0
    train_seconds: float = 0.0
    tokens: int = 0
    log: list = field(default_factory=list)
    planned_total: int | None = None  # steps that fit max_minutes at the measured pace (the schedule's length)


class _Loop:
    def __init__(
        self, dataset_dir, settings, base_model, run, model_settings, device, on_progress, should_stop, init_adapter
    ):
        self.dataset_dir, self.s, self.base_model, self.run_dir = dataset_dir, settings, base_model, run
        self.model_settings, self.device = model_settings, device
        self.on_progress, self.should_stop, self.init_adapter = on_progress, should_stop, init_adapter
        self.max_len = settings.max_seq_length or model_settings.max_context_tokens
        self.clock = Clock()

    # -- setup ---------------------------------------------------------------------------------------------------

    def _setup(self, oom_rungs: list[str] = ()) -> None:
        import torch

        from penwright.trainer.backends.torch_backend import TorchBackend

        import_heavy()  # here rather than inside the load, so that the setup's split tells the two apart
        self.clock.mark("imports")
        torch.manual_seed(self.s.seed)
        if not (self.dataset_dir / "train.jsonl").is_file():
            raise DatasetError(f"{self.dataset_dir / 'train.jsonl'} does not exist.", "Run `penwright curate` first.")
        resume = self.run_dir.usable_checkpoint()  # a damaged latest one falls back to the one before it
        warm = self.init_adapter if resume is None else None
        self.backend = TorchBackend(self.base_model, self.s, self.model_settings, self.device).load(warm)
        self.clock.mark("model")
        D.check_tokenizer(self.dataset_dir, self.backend.tokenizer)
        self.rows, self.train_stats = self._rows("train.jsonl")
        if not self.rows:
            raise DatasetError(
                f"{self.dataset_dir / 'train.jsonl'} has no usable rows.",
                "Write more (or lower curation.min_tokens) and curate again.",
            )
        self.clock.mark("rows")
        self._choose_compile()
        self._fit_memory(resume is not None, oom_rungs)
        self.clock.mark("memory plan")
        self.valid, self.valid_stats = self._rows("valid.jsonl", limit=self.s.eval_max_rows, optional=True)
        self.per_epoch = math.ceil(len(self.rows) / self.s.batch_size)
        epochs_steps = math.ceil(self.s.epochs * self.per_epoch / self.s.grad_accumulation)
        self.total = self.s.max_steps or max(1, epochs_steps)
        params = self.backend.trainable_parameters()
        self.opt = make_optimizer(params, self.s, self.device)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda st: lr_factor(st, self.total, self.s))
        self.state = LoopState()
        if resume is not None:
            self._restore(resume)
        self.plateau = Plateau(**(self.state.plateau or plateau_settings(self.s)))
        self.full_total = self.total  # what max_steps / epochs ask for; max_minutes may plan fewer
        self.total = self.state.planned_total or self.total
        self.run_dir.write_config(self._resolved())
        self.clock.mark("validation rows, optimizer")

    def _choose_compile(self) -> None:
        """CUDA: the decoder layers stay compiled only if the run plans enough tokens to repay the compile
        (`TrainingSettings.compile`); before the memory plan, which depends on it."""
        from penwright.trainer.backends.levers import compile_pays

        if not self.backend.levers.compile_layers:
            return
        tokens = sum(len(r.input_ids) for r in self.rows)
        per_step = tokens / len(self.rows) * self.s.batch_size * self.s.grad_accumulation
        planned = self.s.max_steps * per_step if self.s.max_steps else self.s.epochs * tokens
        if not compile_pays(self.s.compile, int(planned)):
            self.backend.set_levers(replace(self.backend.levers, compile_layers=False))

    def _fit_memory(self, resumed: bool, oom_rungs) -> None:
        """Rows per micro-batch and checkpointing from the memory budget (`TorchBackend.fit_memory`), the rows of
        an optimizer step unchanged. A resumed run keeps the plan it started with (the data order depends on the
        rows per micro-batch); after an out-of-memory error the OOM ladder's settings stand."""
        if not self.s.fit_memory or oom_rungs:
            return
        if resumed:
            saved = self._planned_before()
            if saved:
                self.s = self.backend.settings = self.s.model_copy(update=saved)
                self.backend.set_checkpointing(self.s.checkpoint_fraction, self.s.recompute_elementwise)
            return
        budget = None if self.s.memory_budget_gib is None else int(self.s.memory_budget_gib * 2**30)
        longest = max(len(r.input_ids) for r in self.rows)
        self.s = self.backend.fit_memory(self.s, budget, row_tokens=longest, max_rows=min(16, len(self.rows)))

    def _planned_before(self) -> dict | None:
        """The micro-batching and checkpointing this run's first start chose (its config.yaml), if it recorded any."""
        import yaml

        path = self.run_dir.path / "config.yaml"
        if not path.is_file():
            return None
        saved = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("training") or {}
        keys = ("batch_size", "grad_accumulation", "gradient_checkpointing", "recompute_elementwise")
        return {k: saved[k] for k in keys if k in saved} or None

    def _rows(self, name: str, limit: int | None = None, optional: bool = False):
        path = self.dataset_dir / name
        if optional and not path.is_file():
            return [], None
        samples, stats = D.encode_split(path, self.backend.tokenizer, self.max_len, self.s.completion_only, limit)
        if not samples and optional:
            return [], stats
        return D.make_rows(samples, self.max_len, self.s.packing), stats

    def _restore(self, checkpoint) -> None:
        import torch

        step, path, _meta = checkpoint
        self.backend.load_adapter_weights(path / "adapter")
        saved = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        self.state = LoopState(**saved["loop"])
        torch.set_rng_state(saved["rng"])
        log.info("resuming %s from step %d", self.run_dir.run_id, step)

    def _resolved(self) -> dict:
        return {
            "training": self.s.model_dump(),
            "model": self.model_settings.model_dump(),
            "base_model": self.base_model,
            "dataset_dir": str(self.dataset_dir),
            "backend": self.device,
            "precision": self.backend.precision,
            "quantization": self.backend.quant,
            "attention": self.backend.attention,
            "levers": self.backend.levers.tag(),  # CUDA speed levers this run used ("none" elsewhere)
            "init_adapter": str(self.init_adapter) if self.init_adapter else None,
            "max_seq_length": self.max_len,
            "rows": len(self.rows),
            "total_steps": self.total,
        }

    # -- the loop ------------------------------------------------------------------------------------------------

    def run(self, oom_rungs: list[str]) -> RunResult:
        self._setup(oom_rungs)
        self.clock.begin_training()
        self.backend.model.train()
        st, reason = self.state, None
        while reason is None:
            if st.step >= self.total:
                reason = "max_steps" if self.s.max_steps else "epochs"
                break
            loss, grad_norm, tokens, seconds = self._step()
            st.step, st.tokens, st.train_seconds = st.step + 1, st.tokens + tokens, st.train_seconds + seconds
            self._fit_time_budget()
            plateaued = self.plateau.update(st.step, loss)
            eval_loss = self._maybe_eval()
            self._log(loss, eval_loss, grad_norm, tokens / max(seconds, 1e-9))
            reason = self._stop_reason(eval_loss, plateaued)
            if reason is None and st.step % self.s.save_every == 0:
                self._checkpoint(eval_loss)
        return self._finish(reason, oom_rungs)

    def _step(self) -> tuple[float, float, int, float]:
        """One optimizer step over grad_accumulation micro-batches; loss is the token mean over all of them."""
        import torch

        t0 = time.perf_counter()
        batches, tokens = [], 0
        for _ in range(self.s.grad_accumulation):
            batch, n = self._micro_batch()
            batches.append(batch)
            tokens += n
        loss, grad_norm = optimizer_step(self.backend, self.opt, batches, self.s)
        self.sched.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss, grad_norm, tokens, time.perf_counter() - t0

    def _fit_time_budget(self) -> None:
        """With max_minutes, shorten the run to the steps that fit at the pace measured over the first steps, so the
        learning-rate schedule ends when time does (instead of a time cap cutting it off at full rate)."""
        st = self.state
        if self.s.max_minutes is None or not (st.step in TIME_BUDGET_CHECKS or st.step % TIME_BUDGET_EVERY == 0):
            return
        fits = int(TIME_BUDGET_SHARE * self.s.max_minutes * 60 / (st.train_seconds / st.step))
        planned = min(self.full_total, max(st.step + 1, fits))  # the pace may change: later checks move it again
        if planned != self.total:
            log.info(
                "%d of %d steps fit in %.1f minutes at this pace: the schedule ends there",
                planned,
                self.full_total,
                self.s.max_minutes,
            )
        st.planned_total = self.total = planned

    def _micro_batch(self) -> tuple[dict, int]:
        epoch, pos = divmod(self.state.micro, self.per_epoch)
        if pos == 0 or not hasattr(self, "_order") or self._order[0] != epoch:
            self._order = (epoch, D.epoch_batches(self.rows, self.s.batch_size, self.s.seed, epoch))
        self.state.micro += 1
        rows = [self.rows[i] for i in self._order[1][pos]]
        return self.backend.collate(rows), sum(len(r.input_ids) for r in rows)

    def _eval_batches(self) -> list[dict]:
        bs = self.s.batch_size
        return [self.backend.collate(self.valid[i : i + bs]) for i in range(0, len(self.valid), bs)]

    def _maybe_eval(self, force: bool = False) -> float | None:
        if not self.valid or (not force and (not self.s.eval_every or self.state.step % self.s.eval_every)):
            return None
        loss = self.backend.evaluate(self._eval_batches())
        st = self.state
        if st.best_eval is None or loss < st.best_eval - 1e-6:
            st.best_eval, st.evals_since_best = loss, 0
        else:
            st.evals_since_best += 1
        return loss

    def _log(self, loss: float, eval_loss: float | None, grad_norm: float, tps: float) -> None:
        st = self.state
        lr = self.sched.get_last_lr()[0]
        row = {
            "step": st.step,
            "epoch": round(st.micro / self.per_epoch, 4),
            "loss": round(loss, 6),
            "eval_loss": None if eval_loss is None else round(eval_loss, 6),
            "lr": lr,
            "grad_norm": round(grad_norm, 6),
            "tokens_per_s": round(tps, 1),
            "elapsed_s": round(st.train_seconds, 3),
        }
        if st.step % self.s.log_every == 0 or eval_loss is not None:
            st.log.append(row)
        if self.on_progress:
            rate = st.step / max(st.train_seconds, 1e-9)
            self.on_progress(
                {
                    "step": st.step,
                    "total": self.total,
                    "loss": loss,
                    "eval_loss": eval_loss,
                    "lr": lr,
                    "tokens_per_s": tps,
                    "eta_s": (self.total - st.step) / max(rate, 1e-9),
                }
            )

    def _stop_reason(self, eval_loss: float | None, plateaued: bool) -> str | None:
        s, st = self.s, self.state
        if self.should_stop and self.should_stop():
            return "cancelled"
        if s.max_minutes is not None and st.train_seconds >= s.max_minutes * 60:
            return "time_cap"
        if plateaued:
            return "plateau"
        if eval_loss is not None and s.early_stop_patience and st.evals_since_best >= s.early_stop_patience:
            return "early_stop"
        return None

    def _checkpoint(self, eval_loss: float | None) -> Path:
        import torch

        self.state.plateau = self.plateau.to_dict()
        state = {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "loop": asdict(self.state),
            "rng": torch.get_rng_state(),
        }
        meta = {"eval_loss": eval_loss, "train_loss_smoothed": self.plateau.ema, "micro": self.state.micro}
        path = self.run_dir.write_checkpoint(self.state.step, self.backend.save, state, meta, self.s.keep_best)
        self.run_dir.write_logs(self.state.log)
        return path

    # -- the end -------------------------------------------------------------------------------------------------

    def _finish(self, reason: str, oom_rungs: list[str]) -> RunResult:
        st = self.state
        final_eval = self._maybe_eval(force=True) if self.valid else None
        if final_eval is not None and st.log and st.log[-1]["step"] == st.step:
            st.log[-1]["eval_loss"] = round(final_eval, 6)
        latest = self.run_dir.latest_checkpoint()
        if latest is None or latest[0] != st.step:
            self._checkpoint(final_eval)
        best = self.run_dir.best_checkpoint()
        end = RunEnd(
            reason=reason,
            steps=st.step,
            total_steps=self.total,
            train_loss=self.plateau.ema,
            eval_loss=final_eval,
            best_eval_loss=best[2]["eval_loss"] if best else final_eval,
            backend=self.device,
            adapter_format="peft",
            log=st.log,
            train_s=st.train_seconds,
            tokens=st.tokens,
            peak_memory_bytes=self.backend.peak_memory_bytes(),
            precision=self.backend.precision,
            train_rows=len(self.rows),
            truncated_rows=self.train_stats.truncated,
            padding_share=self._padding_share(),
            oom_rungs=list(oom_rungs),
        )
        return finish_run(self.run_dir, end, lambda folder: self._write_adapter(folder, final_eval), self.clock)

    def _write_adapter(self, folder: Path, final_eval: float | None) -> None:
        """The adapter to publish: the best checkpoint by eval loss when evaluation ran, else the final weights."""
        best = self.run_dir.best_checkpoint()
        if best is not None and final_eval is not None and best[2]["eval_loss"] < final_eval:
            shutil.copytree(best[1] / "adapter", folder)
        else:
            self.backend.save(folder)

    def _padding_share(self) -> float:
        width = self.max_len if self.s.packing else max(len(r.input_ids) for r in self.rows)
        real = sum(len(r.input_ids) for r in self.rows)
        return round(1 - real / (len(self.rows) * width), 4) if self.rows else 0.0
