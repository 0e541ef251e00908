"""Chunked cross-entropy and KL over target positions only.

A causal LM's usual loss materialises fp32 logits for every position of the batch:
(B*T, V) * 4 bytes, 5 GB for 8x1024 tokens at Qwen's 152k vocabulary, and again for
their gradient. Here only the positions that carry a label are projected through the
LM head, in chunks of `chunk` rows, each chunk under activation checkpointing, so at
most one (chunk, V) block of logits is alive at a time (forward and backward).
"""

from __future__ import annotations

IGNORE = -100


def select_targets(hidden, labels):
    """hidden (B, T, H), labels (B, T) shifted -> (N, H) hidden states and (N,) labels of the target positions."""
    flat = labels.reshape(-1)
    keep = (flat != IGNORE).nonzero(as_tuple=True)[0]
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep), flat.index_select(0, keep), keep


def _chunk_ce(h, weight, bias, y):
    import torch.nn.functional as F

    logits = F.linear(h, weight, bias).float()  # (C, V)
    return F.cross_entropy(logits, y, reduction="sum")


def _chunk_kl(h, weight, bias, teacher_h, tau):
    import torch
    import torch.nn.functional as F

    student = F.log_softmax(F.linear(h, weight, bias).float() / tau, dim=-1)  # (C, V)
    with torch.no_grad():  # teacher logits are recomputed in backward rather than kept: (C, V) at a time
        teacher = F.log_softmax(F.linear(teacher_h, weight, bias).float() / tau, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="sum")  # sum p_t (log p_t - log p_s)


def chunked_ce_sum(h, y, head, chunk: int):
    """Sum of token cross-entropies over (N, H) target states, never holding more than (chunk, V) logits."""
    import torch
    from torch.utils.checkpoint import checkpoint

    total = h.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], chunk):
        total = total + checkpoint(
            _chunk_ce, h[i : i + chunk], head.weight, head.bias, y[i : i + chunk], use_reentrant=False
        )
    return total


def chunked_kl_sum(h, teacher_h, head, chunk: int, tau: float):
    """Sum over target positions of KL(teacher || student) at temperature tau (teacher states are detached)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    total = h.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], chunk):
        total = total + checkpoint(
            _chunk_kl,
            h[i : i + chunk],
            head.weight,
            head.bias,
            teacher_h[i : i + chunk].detach(),
            tau,
            use_reentrant=False,
        )
    return total


def full_logits_ce_sum(logits, labels):
    """Reference: the plain loss over full logits (B, T, V) with shifted labels (B, T)."""
    import torch.nn.functional as F

    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
