"""Compiled decoder layers that keep less for backward (`Levers.activation_budget`, torch's partitioner budget):
the same loss and LoRA gradients as the plain loop, with fewer bytes saved for backward than the compiler's
default. On the CPU (Inductor's CPU backend, fp32: exact to float rounding); the bf16 CUDA case is in
test_train_levers_gpu.py."""

from __future__ import annotations

import pytest
from test_train_levers import _backend, assert_same, ours_step, plain_step
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, row

from penwright.trainer import data as D
from penwright.trainer.backends.levers import Levers, compile_decoder_layers

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def samples(tiny_model_dir):
    backend = _backend(tiny_model_dir)
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:4]
    return [D.encode_row(backend.tokenizer, row(i, t), 200)[0] for i, t in enumerate(texts)]


def compiled(model_dir, budget: float):
    backend = _backend(model_dir, attention="sdpa")
    torch._dynamo.reset()
    backend.levers = Levers(compile_layers=True, activation_budget=budget)
    compile_decoder_layers(backend.model.get_base_model())
    return backend


def saved_bytes(backend, samples) -> int:
    """Bytes the forward saves for backward (each storage once, the weights left out)."""
    weights = {p.untyped_storage().data_ptr() for p in backend.model.parameters()}
    saved = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    batch = backend.collate(D.pack(samples, 1024))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ce, _, _ = backend.loss_sums(batch, kl=False)
    ce.backward()
    backend.model.zero_grad(set_to_none=True)
    return sum(saved.values())


def test_a_lower_activation_budget_keeps_less_and_learns_the_same(tiny_model_dir, samples):
    full, half = compiled(tiny_model_dir, 1.0), compiled(tiny_model_dir, 0.5)
    assert half.levers.tag() == "compile keeping 50% of activations"
    default_bytes = saved_bytes(full, samples)
    torch._dynamo.reset()  # `full`'s layers share the compiled code cache: `half` must be traced under its budget
    half_bytes = saved_bytes(half, samples)
    assert half_bytes < 0.9 * default_bytes
    assert_same(ours_step(half, samples), plain_step(_backend(tiny_model_dir, packing=False), samples), rel=1e-4)
