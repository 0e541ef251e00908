"""Pick rows per micro-batch and the checkpointing mode from the GPU memory there is, before the first step.

`oom_ladder` reacts to an out-of-memory error after it happened; this plans so that it does not: of the
(rows, share of layers checkpointed, share of activations compiled layers keep) triples whose predicted peak fits
the budget, the one with the highest modelled throughput. Training calls it through `TorchBackend.fit_memory`
(`training.fit_memory`, on by default; `memory_budget_gib`, default the GPU's free memory). The prediction is

    static (weights, adapter, its gradients and AdamW state)
  + held activations: tokens x layers x hidden x (bytes per token per layer, in units of hidden, by mode)
  + one layer's full activations (a checkpointed layer is recomputed whole in backward)
  + the loss's transient (chunked loss: one chunk of fp32 logits, its log-softmax and gradient; fused loss: none)

with the per-mode figures measured on CUDA (H200, 2026-12-02, `train_throughput.py`, LoRA r16 dropout 0.05,
FlashAttention varlen): about 90 x hidden bytes kept per token per layer without checkpointing in eager mode
(7B 92, 0.5B 88), 74 with compiled layers, 3.5 with checkpointing (the CPU's SDPA path keeps 132).
The throughput model: a checkpointed layer costs one more forward (+50% of its time when the base weights
are frozen), and a micro-batch of T tokens runs at T / (T + T0) of the full rate: per-step work that does
not grow with T (launches, the optimizer, syncs) made one 2048-token row at 7B 40% slower per token than two
with all layers checkpointed, so rows are not traded away for less recompute. Compiled layers keeping 50% of
their activations (torch's partitioner budget) cost +5% of their time (0.5B, H200, 2026-12-03: 8 rows that way
ran 2.5x the tokens/s of 4 rows keeping everything, at less memory).
"""

from __future__ import annotations

from dataclasses import dataclass

KEEP_ALL = 90.0  # bytes per token per layer / hidden, LoRA with dropout > 0, eager (CUDA, measured)
KEEP_ALL_COMPILED = 74.0  # the same with compiled decoder layers (fused elementwise work keeps less)
DROPOUT_COPIES = 23.0  # of KEEP_ALL: each projection's dropped input (none with dropout 0); the CPU's 34 of 132, scaled
CHECKPOINTED = 3.5
LOSS_BYTES_PER_LOGIT = 12  # fp32 logits + log-softmax + gradient of one chunk (bf16 copy too, rounded up)
FRAGMENTATION = 1.08  # the caching allocator's slack over the sum of live tensors
STEP_OVERHEAD_TOKENS = 4096  # T0: a micro-batch of T tokens runs at T / (T + T0) of the full rate
FRACTIONS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
# Compiled layers that are not checkpointed can keep a share of their activations (`Levers.activation_budget`):
# share -> extra time of such a layer, as measured on the H200 (only shares measured to pay are listed). 0.5: at
# 0.5B, 8 rows, compile + fused CE, 2026-12-03: 104,723 -> 100,074 tokens/s (+4.6% time) for 23.39 -> 11.16 GiB
# (activations x 0.45; predicted x 0.5)
KEEP_COSTS = {1.0: 0.0, 0.5: 0.05}
KEEP_ALL_CPU = 132.0  # the CPU's causal SDPA path in bf16 (`train_throughput.py --held`); fp32 activations keep twice


@dataclass(frozen=True)
class Shape:
    """What the prediction needs of the model and the run."""

    hidden: int
    layers: int
    vocab: int
    dropout: float
    loss_chunk: int  # target tokens per loss chunk; 0 for the fused loss
    compiled: bool = False  # decoder layers through torch.compile
    target_share: float = 0.75  # share of a row's tokens that carry a label
    device: str = "cuda"
    activation_bytes: int = 2  # bf16 activations; 4 on a CPU training in fp32


@dataclass(frozen=True)
class Plan:
    rows: int
    fraction: float  # share of decoder layers checkpointed
    predicted_bytes: int
    keep: float = 1.0  # share of activations the other (compiled) layers keep for backward

    def describe(self) -> str:
        gib = self.predicted_bytes / 2**30
        kept = f", the others keep {self.keep:.0%} of their activations" if self.keep < 1 else ""
        return f"{self.rows} rows, checkpoint {self.fraction:g} of the layers{kept}, predicted {gib:.1f} GiB"


def keep_all(shape: Shape) -> float:
    """Bytes per token per layer, in units of hidden, that a layer keeps for backward without checkpointing."""
    if shape.device == "cpu":
        keep, dropout = KEEP_ALL_CPU, DROPOUT_COPIES * KEEP_ALL_CPU / KEEP_ALL
    else:
        keep, dropout = (KEEP_ALL_COMPILED if shape.compiled else KEEP_ALL), DROPOUT_COPIES
    return (keep - (dropout if shape.dropout == 0 else 0.0)) * shape.activation_bytes / 2


def held_per_token(shape: Shape, fraction: float, keep: float = 1.0) -> float:
    """Activation bytes one token keeps for backward over all layers, with `fraction` of the layers checkpointed
    and the others keeping `keep` of what they would."""
    checkpointed = CHECKPOINTED * shape.activation_bytes / 2
    return shape.layers * shape.hidden * (fraction * checkpointed + (1 - fraction) * keep * keep_all(shape))


def predict_peak(shape: Shape, static_bytes: int, tokens: int, fraction: float, keep: float = 1.0) -> int:
    activations = tokens * held_per_token(shape, fraction, keep)
    one_layer = tokens * shape.hidden * keep_all(shape) * keep
    loss = min(shape.loss_chunk, int(tokens * shape.target_share)) * shape.vocab * LOSS_BYTES_PER_LOGIT
    return int(static_bytes + FRAGMENTATION * (activations + one_layer + loss))


def modelled_speed(tokens: int, fraction: float, keep: float = 1.0) -> float:
    """Relative tokens per second of a micro-batch of `tokens` with `fraction` of the layers checkpointed and the
    others keeping `keep` of their activations."""
    return tokens / (tokens + STEP_OVERHEAD_TOKENS) / (1 + 0.5 * fraction + KEEP_COSTS[keep] * (1 - fraction))


def plan(
    shape: Shape,
    budget_bytes: int,
    static_bytes: int,
    row_tokens: int,
    max_rows: int,
    fractions: tuple[float, ...] = FRACTIONS,
    allowed_rows: tuple[int, ...] | None = None,
) -> Plan | None:
    """The fitting (rows, fraction) with the highest modelled speed (ties: fewer rows, then fewer checkpointed
    layers), rows up to `max_rows` (and among `allowed_rows` when given). None when not even one row fits
    with every layer checkpointed."""
    best = None
    candidates = sorted(r for r in (allowed_rows or range(1, max_rows + 1)) if 1 <= r <= max_rows)
    keeps = sorted(KEEP_COSTS, reverse=True) if shape.compiled else (1.0,)
    for keep in keeps:
        for fraction in sorted(f for f in fractions if keep == 1 or f < 1):  # keep applies to layers not checkpointed
            for rows in candidates:
                peak = predict_peak(shape, static_bytes, rows * row_tokens, fraction, keep)
                if peak > budget_bytes:
                    break
                speed = modelled_speed(rows * row_tokens, fraction, keep)
                if best is None or speed > best[0] + 1e-12:
                    best = (speed, Plan(rows, fraction, peak, keep))
    return best[1] if best else None


def divisors(n: int) -> tuple[int, ...]:
    """Rows per micro-batch that split an optimizer step of `n` rows into whole micro-batches."""
    return tuple(d for d in range(1, n + 1) if n % d == 0)


def settings_for(settings, chosen: Plan):
    """`settings` (TrainingSettings) changed to run `chosen`: its rows per micro-batch and share of checkpointed
    layers, and enough gradient accumulation that an optimizer step still sees at least the rows it did
    (batch_size x grad_accumulation), so the plan changes speed and memory, not the optimisation."""
    import math

    per_step = settings.batch_size * settings.grad_accumulation
    ckpt = chosen.fraction if 0 < chosen.fraction < 1 else chosen.fraction == 1
    return settings.model_copy(
        update={
            "batch_size": chosen.rows,
            "gradient_checkpointing": ckpt,
            "grad_accumulation": max(1, math.ceil(per_step / chosen.rows)),
            "recompute_elementwise": False,
        }
    )
