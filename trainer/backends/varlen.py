"""Padding-free attention for packed rows: every sample of a micro-batch in ONE row, attention per sample.

Registered with transformers as attention implementation `penwright_varlen` (and not as a mask
function, so transformers builds no (T, T) mask at all). The decoder gets `cu_seq_lens_q/k` and
`max_length_q/k` keyword arguments (transformers passes them through to the attention function).
On CUDA this is FlashAttention's varlen kernel through `torch.nn.attention.varlen.varlen_attn`:
no padding, no mask tensor, no work on masked blocks. Elsewhere (CPU tests) each sample runs
through causal SDPA in a loop: the same numbers, slowly.
"""

from __future__ import annotations

import inspect

NAME = "penwright_varlen"


def cuda_varlen_available() -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401  (torch >= 2.10)
    except ImportError:
        return False
    return True


def register() -> str:
    """Registers the attention function with transformers; on CUDA with the kernel's options read once
    (no signature inspection inside a layer that torch.compile traces)."""
    from functools import partial

    from transformers import AttentionInterface

    fn = partial(varlen_attention, cuda_options=kernel_options()) if cuda_varlen_available() else varlen_attention
    AttentionInterface.register(NAME, fn)
    return NAME


def kernel_options() -> dict:
    """Keyword arguments of this torch's `varlen_attn` for causal attention, and whether it takes GQA itself."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}  # 2.10/2.11; >= 2.12
    return {"causal": causal, "gqa": "enable_gqa" in params}


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, cuda_options=None, **kwargs):
    """query (1, Hq, T, D), key/value (1, Hkv, T, D) -> ((1, T, Hq, D), None)."""
    import torch

    cu, max_len = kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"])
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # (T, H, D)
    gqa = k.shape[1] != q.shape[1]
    if q.is_cuda:
        from torch.nn.attention.varlen import varlen_attn

        opts = cuda_options or kernel_options()
        extra = dict(opts["causal"])
        if gqa and opts["gqa"]:
            extra["enable_gqa"], gqa = True, False
        if gqa:
            k, v = _repeat_kv(q, k, v)
        # FlashAttention takes 16-bit inputs only; a k-bit-prepared model (QLoRA) keeps some activations in fp32
        half = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        out = varlen_attn(q.to(half), k.to(half), v.to(half), cu, cu, max_len, max_len, scale=scaling, **extra)
        out = out.to(query.dtype)
    else:
        if gqa:
            k, v = _repeat_kv(q, k, v)
        parts = []
        bounds = cu.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))  # (H, n, D)
            parts.append(
                torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling).transpose(
                    0, 1
                )
            )
        out = torch.cat(parts, dim=0)
    return out.unsqueeze(0), None


def _repeat_kv(q, k, v):
    """Grouped-query attention without kernel support: repeat each KV head for its query heads."""
    rep = q.shape[1] // k.shape[1]
    return k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)


def collate_varlen(rows, pad_id: int) -> dict:
    """All rows' samples concatenated into one row of real tokens, with cumulative sample boundaries."""
    import torch

    ids, labels, pos, lengths = [], [], [], []
    for r in rows:
        ids += r.input_ids
        labels += r.labels
        pos += r.position_ids
        lengths += r.lengths or [len(r.input_ids)]
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    return {
        "input_ids": torch.tensor([ids]),
        "labels": torch.tensor([labels]),
        "position_ids": torch.tensor([pos]),
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
