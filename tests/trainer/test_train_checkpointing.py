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


def test_cli_flag_takes_a_bool_or_a_fraction():
    import argparse

    from penwright.cli.train import add_arguments, overrides_from

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for text, fraction in [("0.5", 0.5), ("true", 1.0), ("false", 0.0)]:
        args = parser.parse_args(["--gradient-checkpointing", text, "--recompute-elementwise"])
        s = TrainingSettings(**overrides_from(args))
        assert s.checkpoint_fraction == fraction and s.recompute_elementwise is True


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
        live = {
            t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
            for t in (r() for r in self.refs)
            if t is not None
        }
        return sum(n for ptr, n in live.items() if ptr not in weights)


def _run(backend, batch, seed: int = 0):
    """(loss, LoRA gradients, bytes held for backward after the forward, MLP starts per layer) of one step."""
    import torch

    layers = backend.model.get_base_model().model.layers
    starts = [0] * len(layers)
    hooks = [
        layer.mlp.register_forward_pre_hook(lambda *_, i=i: starts.__setitem__(i, starts[i] + 1))
        for i, layer in enumerate(layers)
    ]
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
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:3]
    samples = [D.encode_row(backend.tokenizer, row(i, t), 256)[0] for i, t in enumerate(texts)]
    return backend, backend.collate(D.pack(samples, 256))


MODES = [
    ("as loaded", None),
    ("none", (0.0, False)),
    ("half", (0.5, False)),
    ("full", (1.0, False)),
    ("elementwise", (0.0, True)),
    ("half + elementwise", (0.5, True)),
]


@pytest.fixture(scope="module")
def runs(backend_and_batch):
    """One step in each checkpointing mode, on the same weights and batch (and a reseeded one)."""
    backend, batch = backend_and_batch
    out, layers = {}, {}
    for name, mode in MODES:
        if mode is not None:
            layers[name] = backend.set_checkpointing(*mode)
        out[name] = _run(backend, batch)
    out["reseeded"] = _run(backend, batch, seed=5)
    backend.set_checkpointing(0.5)
    return out, layers


def test_each_mode_recomputes_the_layers_it_names(runs):
    out, layers = runs
    assert out["as loaded"][3] == [2, 1]  # the setting (0.5 of 2 layers): layer 0 runs again in backward, 1 not
    assert layers["none"] == {"full": [], "elementwise": []} and out["none"][3] == [1, 1]
    assert layers["full"] == {"full": [0, 1], "elementwise": []} and out["full"][3] == [2, 2]
    assert layers["elementwise"] == {"full": [], "elementwise": [0, 1]} and out["elementwise"][3] == [2, 2]
    assert layers["half + elementwise"] == {"full": [0], "elementwise": [1]}


def test_every_mode_gives_the_same_loss_and_gradients(runs):
    import torch

    out, _ = runs
    loss, grads = out["none"][0], out["none"][1]
    assert any("lora_A" in k for k in grads) and any(
        float(g.abs().max()) > 0 for k, g in grads.items() if "lora_A" in k
    )
    for name, _ in MODES:
        assert out[name][0] == pytest.approx(loss, rel=1e-5), name
        assert set(out[name][1]) == set(grads)
        for key, g in grads.items():
            torch.testing.assert_close(out[name][1][key], g, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}")
    # the dropout masks matter (so recomputing them identically was tested): another seed, other gradients
    assert any(not torch.allclose(out["reseeded"][1][k], g) for k, g in grads.items())


def test_memory_held_for_backward_falls_with_recomputation(runs):
    held = {name: r[2] for name, r in runs[0].items()}
    assert held["none"] > held["half"] > held["full"]
    assert held["none"] > held["elementwise"] > held["half + elementwise"] > held["full"]
    # keeping only the big products holds well under half of what keeping everything holds
    assert held["elementwise"] - held["full"] < 0.5 * (held["none"] - held["full"])


def test_a_run_with_partial_and_elementwise_checkpointing(tiny_model_dir, tmp_path):
    import yaml
    from train_fixtures import write_dataset

    from penwright.trainer.train import run_training

    dataset = write_dataset(tmp_path / "ds", paragraphs(EXAMPLE_MANUSCRIPT)[:12])
    s = TrainingSettings(
        rank=4,
        alpha=8,
        max_seq_length=160,
        batch_size=2,
        max_steps=3,
        eval_every=3,
        save_every=3,
        gradient_checkpointing=0.5,
        recompute_elementwise=True,
    )
    result = run_training(dataset, s, tiny_model_dir, tmp_path / "run")
    assert result.status == "completed" and result.steps == 3 and result.eval_loss is not None
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["training"]["gradient_checkpointing"] == 0.5 and saved["training"]["recompute_elementwise"] is True
