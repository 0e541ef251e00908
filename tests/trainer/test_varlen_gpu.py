"""The CUDA packed-attention path must be causal and per-sample: same output as causal SDPA on each sample."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("heads,kv_heads,dim", [(4, 4, 64), (14, 2, 64), (8, 2, 128)])
def test_varlen_attention_matches_causal_sdpa_per_sample(heads, kv_heads, dim):
    if not torch.cuda.is_available():
        pytest.fail("gpu test run without CUDA")
    from penwright.trainer.backends.varlen import cuda_varlen_available, varlen_attention

    assert cuda_varlen_available()
    torch.manual_seed(0)
    lengths = [37, 128, 5, 300]
    total = sum(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16)
    out, _ = varlen_attention(None, q, k, v, None, scaling=dim**-0.5, cu_seq_lens_q=cu, max_length_q=max(lengths))
    rep = heads // kv_heads
    ref, causal_gap = [], []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = q[0, :, a:b], k[0, :, a:b].repeat_interleave(rep, 0), v[0, :, a:b].repeat_interleave(rep, 0)
        ref.append(torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True).transpose(0, 1))
        full = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=False).transpose(0, 1)
        causal_gap.append((full - ref[-1]).abs().max().item())
    ref = torch.cat(ref, 0)
    err = (out[0].float() - ref.float()).abs().max().item()
    assert err < 2e-2, f"varlen attention differs from causal SDPA by {err}"
    assert max(causal_gap) > 10 * err  # a non-causal kernel would be caught by the tolerance above
