"""The memory budget wired into training (`training.fit_memory`, `memory_budget_gib`), on the CPU with builtin:tiny:
before the first step the trainer takes the rows per micro-batch and the checkpointing that are fastest within the
budget, keeps the rows of an optimizer step (so the losses are the unplanned run's), keeps its first plan on a
resume, and leaves the OOM ladder's settings alone. The plan's arithmetic is in test_train_levers.py."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, write_dataset

from penwright.trainer.backends.memory_budget import KEEP_COSTS, Shape, plan, predict_peak
from penwright.trainer.runs import RunDir
from penwright.trainer.settings import ModelSettings, TrainingSettings
from penwright.trainer.train import _Loop, run_training

BASE = dict(
    rank=4,
    alpha=8,
    dropout=0.0,
    precision="fp32",  # no bf16 rounding: micro-batches of other sizes give the same numbers
    learning_rate=3e-3,
    max_seq_length=160,
    batch_size=4,
    grad_accumulation=1,
    warmup_steps=1,
    eval_every=None,
    save_every=2,
    max_steps=4,
)
GIB = 2**30


def settings(**kw) -> TrainingSettings:
    return TrainingSettings(**{**BASE, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), paragraphs(EXAMPLE_MANUSCRIPT))


def loop(dataset, model_dir, run: Path, s: TrainingSettings) -> _Loop:
    return _Loop(dataset, s, str(model_dir), RunDir(run), ModelSettings(), "cpu", None, None, None)


@pytest.fixture(scope="module")
def budgets(dataset, tiny_model_dir, tmp_path_factory) -> dict[str, float]:
    """GiB budgets around the predicted peaks of this model and data: `tight` fits one row with every layer
    recomputed and nothing more, `roomy` all four rows of a step with none recomputed."""
    unplanned = loop(dataset, tiny_model_dir, tmp_path_factory.mktemp("probe"), settings(fit_memory=False))
    unplanned._setup()
    backend, longest = unplanned.backend, max(len(r.input_ids) for r in unplanned.rows)
    one_all = backend.predicted_peak(longest, 1.0)
    assert one_all < backend.predicted_peak(longest, 0.875) and one_all < backend.predicted_peak(2 * longest, 1.0)
    return {"tight": one_all / GIB, "roomy": 1.001 * backend.predicted_peak(4 * longest, 0.0) / GIB}


def read_log(run: Path) -> list[float]:
    with open(run / "train_log.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def saved_training(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())["training"]


def test_a_tight_budget_takes_one_row_all_recomputed_and_a_roomy_one_every_row_none(
    dataset, tiny_model_dir, tmp_path, budgets
):
    tight = loop(dataset, tiny_model_dir, tmp_path / "tight", settings(memory_budget_gib=budgets["tight"]))
    tight._setup()
    layers = tight.backend.model.get_base_model().config.num_hidden_layers
    assert (tight.s.batch_size, tight.s.grad_accumulation, tight.s.gradient_checkpointing) == (1, 4, True)
    assert tight.backend.layers["full"] == list(range(layers)) and tight.backend.settings is tight.s
    assert tight.per_epoch == len(tight.rows)  # the data is walked one row per micro-batch
    roomy = loop(dataset, tiny_model_dir, tmp_path / "roomy", settings(memory_budget_gib=budgets["roomy"]))
    roomy._setup()
    assert (roomy.s.batch_size, roomy.s.grad_accumulation, roomy.s.gradient_checkpointing) == (4, 1, False)
    assert roomy.backend.layers["full"] == []


def test_the_rows_of_a_step_stay_a_divisor_of_what_was_asked(dataset, tiny_model_dir, tmp_path, budgets):
    """Six rows a step (3 x 2): a plan of four rows would change the optimisation; 1, 2, 3 or 6 do not."""
    s = settings(batch_size=3, grad_accumulation=2, memory_budget_gib=budgets["roomy"])
    planned = loop(dataset, tiny_model_dir, tmp_path / "six", s)
    planned._setup()
    assert planned.s.batch_size in (1, 2, 3, 6)
    assert planned.s.batch_size * planned.s.grad_accumulation == 6


def test_a_planned_run_learns_exactly_what_the_unplanned_one_does(dataset, tiny_model_dir, tmp_path, budgets):
    plain = run_training(dataset, settings(fit_memory=False), tiny_model_dir, tmp_path / "plain")
    planned = run_training(dataset, settings(memory_budget_gib=budgets["tight"]), tiny_model_dir, tmp_path / "plan")
    assert plain.status == planned.status == "completed" and planned.steps == 4
    assert read_log(tmp_path / "plan") == pytest.approx(read_log(tmp_path / "plain"), rel=1e-4)
    recorded = saved_training(tmp_path / "plan")
    assert (recorded["batch_size"], recorded["grad_accumulation"], recorded["gradient_checkpointing"]) == (1, 4, True)
    assert saved_training(tmp_path / "plain")["batch_size"] == 4


def test_a_resumed_run_keeps_the_plan_it_started_with(dataset, tiny_model_dir, tmp_path, budgets):
    run = tmp_path / "run"
    first = run_training(dataset, settings(memory_budget_gib=budgets["tight"]), tiny_model_dir, run)
    assert first.steps == 4
    # more steps asked with more memory: it resumes from step 4 on one row per micro-batch, all recomputed
    resumed = run_training(dataset, settings(max_steps=6, memory_budget_gib=budgets["roomy"]), tiny_model_dir, run)
    assert resumed.steps == 6 and resumed.status == "completed"
    recorded = saved_training(run)
    assert (recorded["batch_size"], recorded["grad_accumulation"], recorded["gradient_checkpointing"]) == (1, 4, True)
    assert len(read_log(run)) == 6


def test_after_out_of_memory_the_ladders_settings_stand(dataset, tiny_model_dir, tmp_path, budgets):
    s = settings(memory_budget_gib=budgets["tight"], gradient_checkpointing=True)
    retry = loop(dataset, tiny_model_dir, tmp_path / "retry", s)
    retry._setup(oom_rungs=["gradient_checkpointing"])
    assert retry.s is s and retry.s.batch_size == 4


def test_the_cpu_plans_nothing_without_a_budget(dataset, tiny_model_dir, tmp_path):
    s = settings()
    assert s.fit_memory and s.memory_budget_gib is None
    plain = loop(dataset, tiny_model_dir, tmp_path / "cpu", s)
    plain._setup()
    assert plain.s is s and plain.backend.layers["full"] == []


# -- what compiled layers keep for backward, in the plan ------------------------------------------------------------

HALF_B = Shape(hidden=896, layers=24, vocab=151936, dropout=0.05, loss_chunk=0, compiled=True)  # Qwen2.5-0.5B


def test_at_half_the_peers_memory_the_plan_takes_more_rows_keeping_half_their_activations():
    """As measured on the H200 (2026-12-03, 0.5B, compile + fused CE, half the TRL peer's 27.65 GiB): 4 rows keeping
    everything ran 39,785 tokens/s at 11.98 GiB, 8 rows keeping 50% 100,074 at 11.16 GiB."""
    p = plan(HALF_B, int(13.8 * GIB), int(1.08 * GIB), row_tokens=1860, max_rows=16)
    assert (p.rows, p.fraction, p.keep) == (8, 0.0, 0.5) and p.predicted_bytes <= 13.8 * GIB
    assert "keep 50%" in p.describe()
    eager = Shape(**{**HALF_B.__dict__, "compiled": False})  # only compiled layers can keep less
    assert plan(eager, int(13.8 * GIB), int(1.08 * GIB), row_tokens=1860, max_rows=16).keep == 1.0


@pytest.mark.parametrize("budget", [3, 6, 13.8, 30, 80])
def test_a_plan_keeps_less_only_where_layers_are_not_all_checkpointed(budget):
    p = plan(HALF_B, int(budget * GIB), int(1.08 * GIB), row_tokens=1860, max_rows=16)
    assert p.keep in KEEP_COSTS and (p.keep == 1.0 or p.fraction < 1)
    assert predict_peak(HALF_B, int(1.08 * GIB), p.rows * 1860, p.fraction, p.keep) == p.predicted_bytes


def test_a_4bit_base_is_planned_with_its_fp32_residual_stream():
    """7B in nf4 on the H200 (2026-12-03, fused CE, all layers checkpointed): 2 rows (3,720 tokens) peaked at
    11.52 GiB over 7.36 held before the step, 6 rows (11,160) at 18.69 over 7.73; with bf16 activations the plan
    predicted 10.3 and 15.7 GiB, under both. Counted as fp32 (peft's k-bit preparation), it is over both."""
    nf4 = Shape(hidden=3584, layers=28, vocab=152064, dropout=0.05, loss_chunk=0, activation_bytes=3)
    bf16 = Shape(**{**nf4.__dict__, "activation_bytes": 2})
    adapter = 3 * 40_370_176 * 4  # r16 on the seven projections, fp32, with gradients and two AdamW moments
    for held, tokens, measured in ((7.36, 3720, 11.52), (7.73, 11160, 18.69)):
        static = int(held * GIB) + adapter
        assert predict_peak(bf16, static, tokens, 1.0) < measured * GIB <= predict_peak(nf4, static, tokens, 1.0)


@pytest.mark.parametrize("fp32", [True, False])
def test_the_kbit_preparation_casts_to_fp32_only_where_asked(tiny_model_dir, fp32):
    """`Levers.kbit_fp32`: peft's k-bit preparation casts the weights a 4/8-bit base leaves in 16 bits to fp32;
    without it they keep their dtype (as TRL trains QLoRA), and the plan counts bf16 activations."""
    import torch
    from transformers import AutoModelForCausalLM

    from penwright.trainer.backends.levers import Levers
    from penwright.trainer.backends.torch_backend import TorchBackend

    backend = TorchBackend(str(tiny_model_dir), settings(), ModelSettings(), "cpu")
    backend.levers = Levers(kbit_fp32=fp32)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    prepared = backend.prepare_kbit(model, checkpointing=True)
    assert not any(p.requires_grad for p in prepared.parameters())
    assert {p.dtype for p in prepared.parameters()} == {torch.float32 if fp32 else torch.bfloat16}
    if not fp32:
        assert prepared.is_gradient_checkpointing
