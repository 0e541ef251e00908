"""Selective gradient checkpointing: the setting (false, true or a fraction), which layers recompute, and that
recomputing some or all layers changes neither the loss nor the adapter's gradients."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, row

from penwright.trainer import data as D
from penwright.trainer.backends.torch_backend import checkpointed_layers
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


def _loss_and_grads(backend, batch):
    import torch

    backend.model.zero_grad(set_to_none=True)
    ce, _, n = backend.loss_sums(batch, kl=False)
    (ce / n).backward()
    grads = {name: p.grad.detach().clone() for name, p in backend.model.named_parameters() if p.requires_grad}
    backend.model.zero_grad(set_to_none=True)
    assert all(torch.isfinite(g).all() for g in grads.values())
    return float(ce) / n, grads


def _recompute_counts(backend, batch) -> list[int]:
    """How many times each decoder layer's MLP started in one forward + backward: 2 where the layer was recomputed
    (a pre-hook: the recompute stops early, once it has regenerated every saved tensor)."""
    layers = backend.model.get_base_model().model.layers
    counts = [0] * len(layers)
    hooks = [layer.mlp.register_forward_pre_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
             for i, layer in enumerate(layers)]
    try:
        ce, _, n = backend.loss_sums(batch, kl=False)
        (ce / n).backward()
    finally:
        for h in hooks:
            h.remove()
        backend.model.zero_grad(set_to_none=True)
    return counts


def test_partial_checkpointing_gives_the_loss_and_gradients_of_none_and_full(tiny_model_dir):
    import torch

    from penwright.trainer.backends.torch_backend import TorchBackend

    s = TrainingSettings(rank=4, alpha=8, dropout=0.0, loss_chunk_tokens=64, gradient_checkpointing=0.5)
    backend = TorchBackend(str(tiny_model_dir), s, ModelSettings(), "cpu").load()
    backend.model.train()
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero, which would leave A's gradients at zero: move it
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:6]
    samples = [D.encode_row(backend.tokenizer, row(i, t), 512)[0] for i, t in enumerate(texts)]
    batch = backend.collate(D.pack(samples, 512))

    assert _recompute_counts(backend, batch) == [2, 1]  # the setting recomputes layer 0 of 2, not layer 1
    partial, g_partial = _loss_and_grads(backend, batch)
    assert backend.set_checkpointing(0.0) == [] and _recompute_counts(backend, batch) == [1, 1]
    none, g_none = _loss_and_grads(backend, batch)
    assert backend.set_checkpointing(1.0) == [0, 1] and _recompute_counts(backend, batch) == [2, 2]
    full, g_full = _loss_and_grads(backend, batch)

    assert partial == pytest.approx(none, rel=1e-5) and full == pytest.approx(none, rel=1e-5)
    assert set(g_partial) == set(g_none) and any("lora_A" in k for k in g_none)
    assert any(float(g.abs().max()) > 0 for k, g in g_none.items() if "lora_A" in k)
    for name, g in g_none.items():
        torch.testing.assert_close(g_partial[name], g, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(g_full[name], g, rtol=1e-4, atol=1e-6, msg=name)
