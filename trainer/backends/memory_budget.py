"""Pick rows per micro-batch and the checkpointing mode from the GPU memory there is, before the first step.

`oom_ladder` reacts to an out-of-memory error after it happened; this plans so that it does not: the
fastest mode whose predicted peak fits the budget, then as many rows as fit. The prediction is

    static (weights, adapter, its gradients and AdamW state)
  + held activations: tokens x layers x hidden x (bytes per token per layer, in units of hidden, by mode)
  + one layer's full activations (a checkpointed layer is recomputed whole in backward)
  + the loss's transient (chunked loss: one chunk of fp32 logits, its log-softmax and gradient; fused loss: none)

with the per-mode figures measured on a Qwen2.5-7B layer under LoRA r16 (`train_throughput.py --held`):
132.3 x hidden bytes kept per token per layer without checkpointing (34 of them LoRA dropout's input copies),
3.5 with it. Order of speed: fewer layers recomputed is faster (a recomputed layer costs one more forward:
about +50% of its time when the base weights are frozen). Elementwise-only recompute is left out: on the
device it was slower than checkpointing whole layers and held more.
"""

from __future__ import annotations

from dataclasses import dataclass

KEEP_ALL = 132.3  # bytes per token per layer / hidden, LoRA with dropout > 0
DROPOUT_COPIES = 34.0  # of KEEP_ALL: each projection's dropped input (none with dropout 0)
CHECKPOINTED = 3.5
LOSS_BYTES_PER_LOGIT = 12  # fp32 logits + log-softmax + gradient of one chunk (bf16 copy too, rounded up)
FRAGMENTATION = 1.08  # the caching allocator's slack over the sum of live tensors
FRACTIONS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


@dataclass(frozen=True)
class Shape:
    """What the prediction needs of the model and the run."""

    hidden: int
    layers: int
    vocab: int
    dropout: float
    loss_chunk: int  # target tokens per loss chunk; 0 for the fused loss
    target_share: float = 0.75  # share of a row's tokens that carry a label


@dataclass(frozen=True)
class Plan:
    rows: int
    fraction: float  # share of decoder layers checkpointed
    predicted_bytes: int

    def describe(self) -> str:
        gib = self.predicted_bytes / 2**30
        return f"{self.rows} rows, checkpoint {self.fraction:g} of the layers, predicted {gib:.1f} GiB"


def held_per_token(shape: Shape, fraction: float) -> float:
    """Activation bytes one token keeps for backward over all layers, with `fraction` of the layers checkpointed."""
    keep = KEEP_ALL - (DROPOUT_COPIES if shape.dropout == 0 else 0.0)
    return shape.layers * shape.hidden * (fraction * CHECKPOINTED + (1 - fraction) * keep)


def predict_peak(shape: Shape, static_bytes: int, tokens: int, fraction: float) -> int:
    keep = KEEP_ALL - (DROPOUT_COPIES if shape.dropout == 0 else 0.0)
    activations = tokens * held_per_token(shape, fraction)
    one_layer = tokens * shape.hidden * keep
    loss = min(shape.loss_chunk, int(tokens * shape.target_share)) * shape.vocab * LOSS_BYTES_PER_LOGIT
    return int(static_bytes + FRAGMENTATION * (activations + one_layer + loss))


def plan(shape: Shape, budget_bytes: int, static_bytes: int, row_tokens: int, max_rows: int,
         fractions: tuple[float, ...] = FRACTIONS) -> Plan | None:
    """The fewest layers checkpointed that fit at least one row, then the most rows (up to `max_rows`) that
    fit with it. None when not even one row fits with every layer checkpointed."""
    for fraction in sorted(fractions):
        rows = 0
        for r in range(1, max_rows + 1):
            if predict_peak(shape, static_bytes, r * row_tokens, fraction) > budget_bytes:
                break
            rows = r
        if rows:
            return Plan(rows, fraction, predict_peak(shape, static_bytes, rows * row_tokens, fraction))
    return None
