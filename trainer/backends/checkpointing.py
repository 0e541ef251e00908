"""Which decoder layers recompute what in backward: gradient checkpointing by layer, and by operation.

Each decoder layer is in one of three modes (bytes per token it keeps for backward, a Qwen2 layer
under LoRA r16 with dropout, measured on CPU with hidden size H):
- keep everything (~120 x H): fastest, most memory;
- `recompute_elementwise`: keep the outputs of the big matmuls (the base projections) and of attention,
  recompute the rest in backward (norms, SiLU, RoPE, dropout, casts and LoRA's rank-r products) (~32 x H):
  cheap work, a few percent of the step;
- checkpointed (`gradient_checkpointing`): keep only the layer's input (~2 x H) and run the whole layer
  again in backward: one more forward, about a third more time when the base weights are frozen.
`gradient_checkpointing` (false, true or a share of layers, evenly spaced) picks the checkpointed
layers; `recompute_elementwise` puts all the others in the middle mode instead of the first. The
layer flags are read by transformers' GradientCheckpointingLayer in every forward, so they can change
between steps. Op-level selection is torch's selective activation checkpointing
(`torch.utils.checkpoint.create_selective_checkpoint_contexts`).
"""

from __future__ import annotations

from functools import partial

GC_KWARGS = {"use_reentrant": False}
MATMULS = ("aten.mm.", "aten.addmm.", "aten.bmm.", "aten.baddbmm.")


def checkpointed_layers(n_layers: int, fraction: float) -> list[int]:
    """Indices of the layers to recompute: round(fraction * n) of them (at least one when fraction > 0),
    evenly spaced from the first, e.g. 28 layers at 0.5 -> 0, 2, 4, ..., 26."""
    k = min(n_layers, max(1, round(fraction * n_layers))) if fraction > 0 else 0
    return [i * n_layers // k for i in range(k)]


def decoder_layers(model) -> list:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def keep_big_products(rank: int, ctx, op, *args, **kwargs):
    """Selective-checkpoint policy: save matmul outputs whose inner and outer sizes both exceed the LoRA rank
    (the base projections) and attention outputs; recompute everything else."""
    from torch.utils.checkpoint import CheckpointPolicy

    name = str(op)
    if name.startswith(MATMULS):
        a, b = (args[1], args[2]) if name.startswith(("aten.addmm.", "aten.baddbmm.")) else (args[0], args[1])
        if min(a.shape[-1], b.shape[-1]) > rank:
            return CheckpointPolicy.MUST_SAVE
    elif "attention" in name or "attn" in name:  # sdpa/flash/efficient/cudnn kernels, FlashAttention varlen
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def set_checkpointing(model, fraction: float, elementwise: bool = False, rank: int = 16) -> dict[str, list[int]]:
    """Checkpoint `fraction` of the decoder layers whole; with `elementwise`, the others keep only their big
    products (`keep_big_products`). Returns {"full": [layer indices], "elementwise": [layer indices]}."""
    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

    layers = decoder_layers(model)
    full = set(checkpointed_layers(len(layers), fraction))
    light = set(range(len(layers))) - full if elementwise else set()
    if (full or light) and not all(hasattr(m, "_gradient_checkpointing_func") for m in layers):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=GC_KWARGS)  # model-level flags too
    light_fn = partial(
        checkpoint,
        context_fn=partial(create_selective_checkpoint_contexts, partial(keep_big_products, rank)),
        **GC_KWARGS,
    )
    for i, layer in enumerate(layers):  # transformers checks these per layer, in each forward
        layer.gradient_checkpointing = i in full or i in light
        if i in full or i in light:
            layer._gradient_checkpointing_func = light_fn if i in light else partial(checkpoint, **GC_KWARGS)
    return {"full": sorted(full), "elementwise": sorted(light)}
