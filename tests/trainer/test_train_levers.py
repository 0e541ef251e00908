"""Ours against the plain loop on the same batch: loss and LoRA gradients equal, for each speed lever that runs
on the CPU (packed varlen rows with the target-only chunked loss; regional compilation of the decoder layers);
the memory budget's plan (pure arithmetic). The CUDA-only levers are in test_train_levers_gpu.py."""

from __future__ import annotations

import pytest
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, row

from penwright.trainer import data as D
from penwright.trainer.backends.levers import Levers, levers_for
from penwright.trainer.backends.memory_budget import FRACTIONS, Shape, modelled_speed, plan, predict_peak
from penwright.trainer.settings import ModelSettings, TrainingSettings

SETTINGS = {"rank": 4, "alpha": 8, "dropout": 0.0, "loss_chunk_tokens": 64, "precision": "fp32"}  # no bf16 rounding


def _backend(model_dir, **overrides):
    import torch

    from penwright.trainer.backends.torch_backend import TorchBackend

    torch.manual_seed(0)
    backend = TorchBackend(str(model_dir), TrainingSettings(**{**SETTINGS, **overrides}), ModelSettings(), "cpu").load()
    backend.model.train()
    with torch.no_grad():  # LoRA B starts at zero, which would leave A's gradients at zero: move it, reproducibly
        g = torch.Generator().manual_seed(1)
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return backend


def _lora_grads(model) -> dict:
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def plain_step(backend, samples):
    """The plain recipe: padded batch, HF's own loss over full logits (labels unshifted, the model shifts)."""
    import torch

    width, pad = max(len(s) for s in samples), backend.tokenizer.pad_token_id
    ids = torch.full((len(samples), width), pad)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, D.IGNORE)
    for i, s in enumerate(samples):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s.input_ids), 1
        labels[i, : len(s)] = torch.tensor([D.IGNORE] + s.labels[:-1])
    loss = backend.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return float(loss.detach()), _lora_grads(backend.model)


def ours_step(backend, samples):
    """Ours: samples packed into one padding-free row, loss on the target positions only (`loss_sums`)."""
    ce, _, n = backend.loss_sums(backend.collate(D.pack(samples, 1024)), kl=False)
    (ce / n).backward()
    return float(ce.detach()) / n, _lora_grads(backend.model)


def assert_same(a, b, rel: float):
    import torch

    loss_a, grads_a = a
    loss_b, grads_b = b
    assert loss_a == pytest.approx(loss_b, rel=rel)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name, g in grads_a.items():
        ref = grads_b[name]
        assert float(ref.norm()) > 0, name  # a zero gradient would make the comparison empty
        assert float((g - ref).norm() / ref.norm()) < rel, name
    assert not torch.equal(next(iter(grads_a.values())), torch.zeros(1))


@pytest.fixture(scope="module")
def samples(tiny_model_dir):
    backend = _backend(tiny_model_dir)
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:4]
    return [D.encode_row(backend.tokenizer, row(i, t), 200)[0] for i, t in enumerate(texts)]


def test_packed_varlen_rows_and_target_only_loss_match_the_plain_loop(tiny_model_dir, samples):
    """Same weights, same samples: the padded full-logits loop and ours (one packed row, per-sample attention,
    chunked loss on the targets) give the same loss and the same LoRA gradients."""
    assert len({len(s) for s in samples}) > 1  # lengths differ: the plain loop pads, ours packs
    plain = plain_step(_backend(tiny_model_dir, packing=False), samples)
    ours = ours_step(_backend(tiny_model_dir, attention="varlen"), samples)
    assert_same(ours, plain, rel=1e-4)


def test_compiled_decoder_layers_match_the_plain_loop(tiny_model_dir, samples):
    """Regional compilation (each decoder layer through torch.compile, here Inductor's CPU backend) changes no
    number beyond float rounding, with checkpointing on half the layers and on packed rows of another length.
    (The CPU's varlen stand-in loops over samples in Python; SDPA with the packed mask runs compiled here.)"""
    import torch

    from penwright.trainer.backends.levers import compile_decoder_layers

    plain = plain_step(_backend(tiny_model_dir, packing=False), samples)
    backend = _backend(tiny_model_dir, attention="sdpa", gradient_checkpointing=0.5)
    torch._dynamo.reset()
    model = backend.model.get_base_model()
    assert compile_decoder_layers(model) == model.config.num_hidden_layers
    assert_same(ours_step(backend, samples), plain, rel=1e-4)
    assert_same(
        ours_step(backend, samples[:3]), plain_step(_backend(tiny_model_dir, packing=False), samples[:3]), rel=1e-4
    )


def test_a_failing_compile_falls_back_to_eager_layers(tiny_model_dir, samples):
    """Where torch.compile cannot build its kernels (no C compiler for Triton, say), training goes on eager."""
    import torch

    from penwright.trainer.backends.checkpointing import decoder_layers

    def broken(gm, example_inputs):
        raise RuntimeError("no C compiler")

    backend = _backend(tiny_model_dir, attention="sdpa")
    layers = decoder_layers(backend.model.get_base_model())
    torch._dynamo.reset()
    for layer in layers:
        layer.compile(backend=broken)
    backend.levers = Levers(compile_layers=True)
    ours = ours_step(backend, samples)
    assert not backend.levers.compile_layers and all(layer._compiled_call_impl is None for layer in layers)
    assert_same(ours, plain_step(_backend(tiny_model_dir, packing=False), samples), rel=1e-4)


def test_layers_that_recompute_by_operation_stay_eager(tiny_model_dir):
    from penwright.trainer.backends.levers import compile_decoder_layers

    backend = _backend(tiny_model_dir, gradient_checkpointing=0.5, recompute_elementwise=True)
    model = backend.model.get_base_model()
    light = set(backend.layers["elementwise"])
    assert light and compile_decoder_layers(model, skip=light) == model.config.num_hidden_layers - len(light)
    layers = model.model.layers
    assert all((layers[i]._compiled_call_impl is None) == (i in light) for i in range(len(layers)))


def test_the_cpu_takes_no_lever():
    assert levers_for("cpu", Levers(compile_layers=True, fused_loss=True)) == Levers()
    assert levers_for("cpu") == Levers()  # the CUDA defaults never reach the CPU path


def test_quantized_layers_are_not_compiled(monkeypatch):
    from penwright.trainer.backends import levers

    monkeypatch.setattr(levers, "triton_available", lambda: True)
    assert levers_for("cuda", Levers(compile_layers=True)).compile_layers
    assert not levers_for("cuda", Levers(compile_layers=True), quantized=True).compile_layers


def test_compile_is_chosen_by_the_planned_tokens():
    from penwright.trainer.backends.levers import COMPILE_MIN_TOKENS, compile_pays

    assert compile_pays("auto", COMPILE_MIN_TOKENS) and not compile_pays("auto", COMPILE_MIN_TOKENS - 1)
    assert compile_pays(True, 1) and not compile_pays(False, 10**12)


@pytest.mark.parametrize("choice", ["auto", False])
def test_a_short_run_trains_its_layers_eager(tiny_model_dir, tmp_path, monkeypatch, choice):
    """Where compilation is on offer (CUDA's default, here granted on the CPU), a run that plans fewer tokens
    than COMPILE_MIN_TOKENS, or one set to `compile: false`, trains with every layer eager and says so."""
    import json

    from penwright.trainer.backends import torch_backend
    from penwright.trainer.presets import load_training_settings
    from penwright.trainer.train import run_training

    def cuda_levers(device, wanted=None, quantized=False):  # levers_for on CUDA with Triton installed
        return wanted or Levers(compile_layers=True)

    monkeypatch.setattr(torch_backend, "levers_for", cuda_levers)
    texts = paragraphs(EXAMPLE_MANUSCRIPT)
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text("".join(json.dumps(row(i, t)) + "\n" for i, t in enumerate(texts)))
    overrides = {"max_steps": 2, "eval_every": None, "warmup_steps": 0, "compile": choice}
    settings = load_training_settings("fast", overrides)
    run_training(ds, settings, tiny_model_dir, tmp_path / "run")
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "levers: none" in config, config


# -- the memory budget ----------------------------------------------------------------------------------------------

SEVEN_B = Shape(hidden=3584, layers=28, vocab=152064, dropout=0.05, loss_chunk=2048)
GIB = 2**30


def test_the_plan_fits_its_budget_and_is_no_slower_with_more_memory():
    static = 15 * GIB
    budgets = (20, 30, 50, 80, 140)
    plans = [plan(SEVEN_B, b * GIB, static, row_tokens=1850, max_rows=8) for b in budgets]
    assert all(p is not None for p in plans)
    for budget, p in zip(budgets, plans, strict=True):
        assert p.predicted_bytes <= budget * GIB
    speeds = [modelled_speed(p.rows * 1850, p.fraction) for p in plans]
    assert speeds == sorted(speeds)
    assert plans[0].fraction == 1.0 and plans[-1].fraction == 0.0 and plans[-1].rows > 1


def test_the_plan_is_the_fastest_pair_that_fits():
    static, budget = 15 * GIB, 40 * GIB
    p = plan(SEVEN_B, budget, static, row_tokens=1850, max_rows=8)
    fitting = [(r, f) for r in range(1, 9) for f in FRACTIONS if predict_peak(SEVEN_B, static, r * 1850, f) <= budget]
    assert (p.rows, p.fraction) in fitting
    assert all(modelled_speed(r * 1850, f) <= modelled_speed(p.rows * 1850, p.fraction) for r, f in fitting)


def test_the_plan_keeps_rows_rather_than_trading_them_for_less_recompute():
    """Seen on the H200: at the padded baseline's 22.7 GiB the first planner took one row with 24 of 28 layers
    checkpointed (4,526 tokens/s) where two rows with all of them ran at 7,252. More rows, all checkpointed."""
    fused = Shape(**{**SEVEN_B.__dict__, "loss_chunk": 0})
    p = plan(fused, int(22.74 * GIB), int(15.15 * GIB), row_tokens=1860, max_rows=8)
    assert p.fraction == 1.0 and p.rows >= 2


def test_nothing_fits_below_the_weights():
    assert plan(SEVEN_B, 14 * GIB, 15 * GIB, row_tokens=1850, max_rows=8) is None


def test_the_fused_loss_and_no_dropout_need_less_memory():
    fused = Shape(**{**SEVEN_B.__dict__, "loss_chunk": 0})
    no_dropout = Shape(**{**SEVEN_B.__dict__, "dropout": 0.0})
    for shape in (fused, no_dropout):
        assert predict_peak(shape, 15 * GIB, 3700, 0.0) < predict_peak(SEVEN_B, 15 * GIB, 3700, 0.0)


@pytest.mark.parametrize(("fraction", "ckpt"), [(0.0, False), (0.5, 0.5), (1.0, True)])
def test_a_plan_becomes_settings_that_keep_the_rows_per_optimizer_step(fraction, ckpt):
    from penwright.trainer.backends.memory_budget import Plan, settings_for

    s = TrainingSettings(batch_size=4, grad_accumulation=2, gradient_checkpointing=0.25, recompute_elementwise=True)
    fitted = settings_for(s, Plan(rows=3, fraction=fraction, predicted_bytes=0))
    assert fitted.batch_size == 3 and fitted.grad_accumulation == 3  # 9 rows a step: no fewer than the 8 asked
    assert fitted.gradient_checkpointing == ckpt and type(fitted.gradient_checkpointing) is type(ckpt)
    assert not fitted.recompute_elementwise
    assert (fitted.learning_rate, fitted.rank) == (s.learning_rate, s.rank)


def test_the_cpu_keeps_its_settings(tiny_model_dir):
    backend = _backend(tiny_model_dir)
    assert backend.fit_memory(backend.settings, budget_bytes=1) is backend.settings
