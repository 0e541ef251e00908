"""Completion-only masking, packing (same loss as unpacked), chunked CE equal to the full-logits loss, KL at init."""

from __future__ import annotations

import pytest
from train_fixtures import EXAMPLE_MANUSCRIPT, paragraphs, row

from penwright.trainer import data as D
from penwright.trainer.settings import ModelSettings, TrainingSettings


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    from penwright.trainer.backends.torch_backend import TorchBackend

    # fp32: these tests compare loss arithmetic exactly (the CPU's default bf16 autocast is covered in test_train.py)
    s = TrainingSettings(rank=4, alpha=8, dropout=0.0, loss_chunk_tokens=64, kl_lambda=0.5, precision="fp32")
    return TorchBackend(str(tiny_model_dir), s, ModelSettings(), "cpu").load()


@pytest.fixture(scope="module")
def samples(backend):
    texts = paragraphs(EXAMPLE_MANUSCRIPT)[:8]
    return [D.encode_row(backend.tokenizer, row(i, t), 512)[0] for i, t in enumerate(texts)]


def test_completion_only_masks_the_prompt(backend):
    tok = backend.tokenizer
    r = row(0, "The keeper climbed the stair at dusk and lit the great lamp, as he had done for forty years.")
    sample, truncated = D.encode_row(tok, r, 512, completion_only=True)
    assert not truncated
    target_ids = [x for x in sample.labels if x != D.IGNORE]
    # exactly the assistant's reply (and its end-of-turn) is learned; nothing of the system/user turns
    assert tok.decode(target_ids) == r["messages"][-1]["content"] + "<|im_end|>\n"
    # labels are shifted: label t is the token after input t
    first = next(i for i, x in enumerate(sample.labels) if x != D.IGNORE)
    assert sample.labels[first] == sample.input_ids[first + 1]
    full, _ = D.encode_row(tok, r, 512, completion_only=False)
    assert full.n_targets == len(full) - 1 > sample.n_targets


def test_long_rows_are_truncated_keeping_the_target_start(backend):
    tok = backend.tokenizer
    r = row(0, "word " * 400, cut=1500)  # a long prompt, shorter target
    sample, truncated = D.encode_row(tok, r, 128)
    assert truncated and len(sample) == 128 and sample.n_targets > 0


def test_packing_gives_the_unpacked_loss(backend, samples):
    import torch

    packed_rows = D.pack(samples, 512)
    assert len(packed_rows) < len(samples)  # several samples share rows
    assert sorted(n for r in packed_rows for n in r.lengths) == sorted(len(s) for s in samples)
    pad = backend.tokenizer.pad_token_id
    with torch.no_grad():
        ce_p, _, n_p = backend.loss_sums(D.collate(packed_rows, pad, packed=True), kl=False)
        ce_u, _, n_u = backend.loss_sums(D.collate(D.single_rows(samples), pad, packed=False), kl=False)
    assert n_p == n_u == sum(s.n_targets for s in samples)
    assert float(ce_p) / n_p == pytest.approx(float(ce_u) / n_u, rel=1e-4)
    # and without restarting positions (plain concatenation) the loss is different: the test can fail
    broken = D.collate(packed_rows, pad, packed=True)
    broken["position_ids"] = torch.arange(broken["input_ids"].shape[1]).expand_as(broken["input_ids"]).clone()
    with torch.no_grad():
        ce_b, _, _ = backend.loss_sums(broken, kl=False)
    assert abs(float(ce_b) / n_p - float(ce_u) / n_u) > 1e-3


def test_chunked_loss_equals_full_logits_loss(backend, samples):
    import torch

    from penwright.trainer.losses import full_logits_ce_sum

    batch = D.collate(D.single_rows(samples[:3]), backend.tokenizer.pad_token_id, packed=False)
    with torch.no_grad():
        ce, _, n = backend.loss_sums(batch, kl=False)
        logits = backend.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ref = full_logits_ce_sum(logits, batch["labels"])
    assert float(ce) == pytest.approx(float(ref), rel=1e-5)


def test_kl_is_zero_before_training_and_positive_after_the_adapter_moves(backend, samples):
    import torch

    batch = D.collate(D.pack(samples, 512), backend.tokenizer.pad_token_id, packed=True)
    with torch.no_grad():
        _, kl0, _ = backend.loss_sums(batch)
    assert abs(float(kl0)) < 1e-4  # LoRA B starts at zero: student == teacher
    with torch.no_grad():
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    try:
        with torch.no_grad():
            _, kl1, _ = backend.loss_sums(batch)
        assert float(kl1) > 1e-3
    finally:
        with torch.no_grad():
            for name, p in backend.model.named_parameters():
                if "lora_B" in name:
                    p.zero_()


def test_varlen_rows_give_the_unpacked_loss(tiny_model_dir, samples, backend):
    """The padding-free layout (all samples in one row, boundaries passed as cu_seq_lens to the attention
    function) gives the same loss; on CUDA the same plumbing runs FlashAttention's varlen kernel."""
    import torch

    from penwright.trainer.backends.torch_backend import TorchBackend

    s = TrainingSettings(rank=4, alpha=8, dropout=0.0, loss_chunk_tokens=64, attention="varlen")
    varlen = TorchBackend(str(tiny_model_dir), s, ModelSettings(), "cpu").load()
    assert varlen.attention == "varlen" and varlen.model.config._attn_implementation == "penwright_varlen"
    batch = varlen.collate(D.pack(samples, 512))
    assert batch["input_ids"].shape[0] == 1 and int(batch["cu_seq_lens_q"][-1]) == sum(len(x) for x in samples)
    with torch.no_grad():
        ce_v, _, n_v = varlen.loss_sums(batch, kl=False)
        ce_u, _, n_u = backend.loss_sums(
            D.collate(D.single_rows(samples), backend.tokenizer.pad_token_id, False), kl=False
        )
    assert n_v == n_u
    assert float(ce_v) / n_v == pytest.approx(float(ce_u) / n_u, rel=1e-4)


def test_cpu_packing_is_plain_causal_attention(backend, samples):
    """On the CPU, auto attention packs rows with plain causal attention (positions run on through the row): a
    row holding one sample scores exactly as that sample alone, and a later sample sees the ones before it."""
    import torch

    from penwright.trainer.backends.torch_backend import TorchBackend, cpu_bf16_supported

    auto = TorchBackend(backend.base_model, TrainingSettings(), ModelSettings(), "cpu")
    assert auto.attention == "causal" and auto.precision == ("bf16" if cpu_bf16_supported() else "fp32")
    pad = backend.tokenizer.pad_token_id
    one = D.collate(D.single_rows(samples[:1]), pad, packed=True, causal=True)
    assert one["position_ids"][0].tolist() == list(range(len(samples[0])))
    packed = D.collate([D._concat(samples[:2])], pad, packed=True, causal=True)
    assert packed["position_ids"][0].tolist() == list(range(len(samples[0]) + len(samples[1])))
    block = D.collate([D._concat(samples[:2])], pad, packed=True)
    with torch.no_grad():
        alone = float(backend.loss_sums(D.collate(D.single_rows(samples[:1]), pad, packed=False), kl=False)[0])
        assert float(backend.loss_sums(one, kl=False)[0]) == pytest.approx(alone, rel=1e-5)
        causal_ce, block_ce = (float(backend.loss_sums(b, kl=False)[0]) for b in (packed, block))
    assert causal_ce != pytest.approx(block_ce, rel=1e-6)  # the second sample attends to the first
