"""The CUDA levers against the plain loop on the same batch, in bf16: Liger's fused linear cross-entropy, regional
compilation of the decoder layers (also keeping half the activations for backward), and both, on FlashAttention
varlen rows. Loss and LoRA gradients within bf16
tolerance of the padded full-logits loop's (plain SDPA, no lever)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from test_train_levers import SETTINGS, assert_same  # noqa: E402
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, row  # noqa: E402

from penwright.trainer import data as D  # noqa: E402
from penwright.trainer.backends.levers import Levers  # noqa: E402
from penwright.trainer.settings import ModelSettings, TrainingSettings  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small Qwen2 with FlashAttention-sized heads (64), from the example manuscript's tokenizer."""
    from pwtest import example_texts

    from penwright.trainer.tiny import TinySpec, build_tiny_model

    spec = TinySpec(hidden_size=256, intermediate_size=704, num_heads=4, num_kv_heads=2, num_layers=3)
    return build_tiny_model(example_texts(), tmp_path_factory.mktemp("models"), spec)


def _backend(model_dir, levers: Levers, **overrides):
    from penwright.trainer.backends.torch_backend import TorchBackend

    if not torch.cuda.is_available():
        pytest.fail("gpu test run without CUDA")
    torch.manual_seed(0)
    s = TrainingSettings(**{**SETTINGS, "precision": "bf16", **overrides})
    backend = TorchBackend(str(model_dir), s, ModelSettings(), "cuda", levers=levers).load()
    backend.model.train()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return backend


def _ours(backend, samples):
    batch = backend.collate(D.pack(samples, 2048))
    ce, _, n = backend.loss_sums(batch, kl=False)
    (ce / n).backward()
    grads = {k: p.grad.detach().float().cpu() for k, p in backend.model.named_parameters() if p.requires_grad}
    backend.model.zero_grad(set_to_none=True)
    return float(ce.detach()) / n, grads


def _plain(backend, samples):
    with backend.autocast():
        loss, grads = _plain_on_cuda(backend, samples)
    return loss, {k: g.float().cpu() for k, g in grads.items()}


def _plain_on_cuda(backend, samples):
    pad = backend.tokenizer.pad_token_id
    width = max(len(s) for s in samples)
    ids = torch.full((len(samples), width), pad)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, D.IGNORE)
    for i, s in enumerate(samples):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s.input_ids), 1
        labels[i, : len(s)] = torch.tensor([D.IGNORE] + s.labels[:-1])
    loss = backend.model(input_ids=ids.cuda(), attention_mask=mask.cuda(), labels=labels.cuda()).loss
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in backend.model.named_parameters() if p.requires_grad}
    backend.model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


@pytest.fixture(scope="module")
def samples(model_dir):
    backend = _backend(model_dir, Levers())
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:6]
    return [D.encode_row(backend.tokenizer, row(i, t), 400)[0] for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def plain(model_dir, samples):
    return _plain(_backend(model_dir, Levers(), packing=False), samples)


CASES = [
    (Levers(), 0.0),
    (Levers(fused_loss=True), 1.0),
    (Levers(compile_layers=True), 1.0),
    (Levers(compile_layers=True, fused_loss=True), 0.0),
    (Levers(compile_layers=True, fused_loss=True, activation_budget=0.5), 0.0),  # the partitioner recomputes more
]


@pytest.mark.parametrize(("levers", "ckpt"), CASES, ids=[f"{lv.tag()}, ckpt {c:g}" for lv, c in CASES])
def test_levers_match_the_plain_loop_in_bf16(model_dir, samples, plain, levers, ckpt):
    torch._dynamo.reset()
    backend = _backend(model_dir, levers, attention="varlen", gradient_checkpointing=ckpt)
    assert backend.attention == "varlen" and backend.levers == levers
    assert_same(_ours(backend, samples), plain, rel=3e-2)
    assert_same(
        _ours(backend, samples[:4]), _ours(_backend(model_dir, Levers(), attention="varlen"), samples[:4]), rel=3e-2
    )  # a second, shorter row: the compiled layers take another length without a wrong answer
