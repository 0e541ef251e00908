"""Selective gradient checkpointing: the setting (false, true or a fraction), which layers recompute, and that
recomputing some or all layers changes neither the loss nor the adapter's gradients."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, row

from penwright.trainer import data as D
from penwright.trainer.backends.checkpointing import checkpointed_layers
from penwright.trainer.settings import ModelSettings, TrainingSettings
from penwright.trainer.train import next_rung


@pytest.mark.parametrize("value, fraction", [(False, 0.0), (True, 1.0), (0.5, 0.5), (0, 0.0), (1, 1.0), ("0.25", 0.25)])
def test_setting_takes_a_bool_or_a_fraction(value, fraction):
    assert TrainingSettings(gradient_checkpointing=value).checkpoint_fraction == fraction


@pytest.mark.parametrize("value", [1.5, -0.1, "most"])
def test_setting_rejects_what_is_not_a_fraction(value):
    with pytest.raises(ValidationError, match="gradient_checkpointing"):
        TrainingSettings(gradient_checkpointing=value)


def test_layers_are_evenly_spaced():
    assert checkpointed_layers(28, 0.5) == list(range(0, 28, 2))
    assert checkpointed_layers(28, 0.25) == [0, 4, 8, 12, 16, 20, 24]
    assert checkpointed_layers(28, 1.0) == list(range(28))
    assert checkpointed_layers(28, 0.0) == []
    assert checkpointed_layers(28, 0.01) == [0]  # asked for some: at least one
    assert checkpointed_layers(2, 0.5) == [0]


def test_oom_ladder_turns_partial_checkpointing_into_full():
    s, rung = next_rung(TrainingSettings(gradient_checkpointing=0.5, batch_size=2))
    assert rung == "gradient_checkpointing" and s.checkpoint_fraction == 1.0
    s, rung = next_rung(s)
    assert rung == "batch_1"


class _HeldForBackward:
    """Bytes of every tensor an op produced in the forward that is still alive afterwards, i.e. held for backward
    (a tensor kept by autograd, or cached by selective checkpointing, keeps its Python object alive)."""

    def __init__(self):
        self.refs = []

    def mode(self):
        import weakref

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        refs = self.refs

        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                refs.extend(weakref.ref(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor))
                return out

        return Record()

    def bytes(self, model) -> int:
        """Live bytes, not counting the model's weights (a transposed weight is a view of it)."""
        import gc

        gc.collect()
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        live = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in (r() for r in self.refs) if t is not None}
        return sum(n for ptr, n in live.items() if ptr not in weights)


def _run(backend, batch, seed: int = 0):
    """(loss, LoRA gradients, bytes held for backward after the forward, MLP starts per layer) of one step."""
    import torch

    layers = backend.model.get_base_model().model.layers
    starts = [0] * len(layers)
    hooks = [layer.mlp.register_forward_pre_hook(lambda *_, i=i: starts.__setitem__(i, starts[i] + 1))
             for i, layer in enumerate(layers)]
    held = _HeldForBackward()
    backend.model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks in every mode
    try:
        with held.mode():
            ce, _, n = backend.loss_sums(batch, kl=False)
        held_bytes = held.bytes(backend.model)
        (ce / n).backward()
    finally:
        for h in hooks:
            h.remove()
    grads = {name: p.grad.detach().clone() for name, p in backend.model.named_parameters() if p.requires_grad}
    backend.model.zero_grad(set_to_none=True)
    assert all(torch.isfinite(g).all() for g in grads.values())
    return float(ce.detach()) / n, grads, held_bytes, starts


@pytest.fixture(scope="module")
def backend_and_batch(tiny_model_dir):
    """A LoRA backend (dropout on) whose settings checkpoint half the layers, and one packed batch."""
    import torch

    from penwright.trainer.backends.torch_backend import TorchBackend

    s = TrainingSettings(rank=4, alpha=8, dropout=0.1, loss_chunk_tokens=64, gradient_checkpointing=0.5)
    backend = TorchBackend(str(tiny_model_dir), s, ModelSettings(), "cpu").load()
    backend.model.train()
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero, which would leave A's gradients at zero: move it
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:6]
    samples = [D.encode_row(backend.tokenizer, row(i, t), 512)[0] for i, t in enumerate(texts)]
    return backend, backend.collate(D.pack(samples, 512))


def test_every_mode_gives_the_same_loss_and_gradients(backend_and_batch):
    import torch

    backend, batch = backend_and_batch
    partial = _run(backend, batch)  # as loaded: layer 0 of 2 checkpointed, by the setting
    assert partial[3] == [2, 1]  # layer 0 ran again in backward, layer 1 did not
    assert backend.set_checkpointing(0.0) == {"full": [], "elementwise": []}
    none = _run(backend, batch)
    assert none[3] == [1, 1]
    assert backend.set_checkpointing(1.0) == {"full": [0, 1], "elementwise": []}
    full = _run(backend, batch)
    assert full[3] == [2, 2]
    assert backend.set_checkpointing(0.0, elementwise=True) == {"full": [], "elementwise": [0, 1]}
    light = _run(backend, batch)
    assert light[3] == [2, 2]
    assert backend.set_checkpointing(0.5, elementwise=True) == {"full": [0], "elementwise": [1]}
    mixed = _run(backend, batch)

    loss, grads = none[0], none[1]
    assert any("lora_A" in k for k in grads) and any(float(g.abs().max()) > 0 for k, g in grads.items() if "lora_A" in k)
    for other in (partial, full, light, mixed):
        assert other[0] == pytest.approx(loss, rel=1e-5)
        assert set(other[1]) == set(grads)
        for name, g in grads.items():
            torch.testing.assert_close(other[1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    # and the dropout masks matter: another seed gives other gradients (the comparison can fail)
    reseeded = _run(backend, batch, seed=5)[1]
    assert any(not torch.allclose(reseeded[k], g) for k, g in grads.items())


def test_memory_held_for_backward_falls_with_recomputation(backend_and_batch):
    backend, batch = backend_and_batch
    held = {}
    for name, fraction, elementwise in [("none", 0.0, False), ("half", 0.5, False), ("elementwise", 0.0, True),
                                        ("full", 1.0, False)]:
        backend.set_checkpointing(fraction, elementwise)
        held[name] = _run(backend, batch)[2]
    backend.set_checkpointing(0.5)
    assert held["none"] > held["half"] > held["full"]
    assert held["none"] > held["elementwise"] > held["full"]
    # keeping only the big products holds well under half of what keeping everything holds
    assert held["elementwise"] - held["full"] < 0.5 * (held["none"] - held["full"])
