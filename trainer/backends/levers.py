"""Speed levers of the CUDA training path, each measured alone (`benchmarks/train_throughput.py --lever`)
and on by default only where it paid (`CUDA_DEFAULT`, from `benchmarks/train_throughput_results.md`).

- `compile_layers`: regional `torch.compile` of each decoder layer (one compiled graph reused by all the
  layers, so the warm-up is one layer's compile, not the whole model's): fuses the elementwise work around
  the matmuls (RMSNorm, RoPE, SiLU*mul, LoRA dropout, scale and add) into a few Triton kernels.
  Layers that recompute by operation (`recompute_elementwise`) are not compiled: torch's selective
  checkpointing sees a compiled region as one opaque call and could no longer choose what to keep.
- `activation_budget`: with compiled layers, the share of activation memory the compiler's partitioner keeps
  for backward (torch's `activation_memory_budget`: 1.0 its default min-cut, lower recomputes more of each
  layer in backward, cheapest work first by FLOPs). A knob between no checkpointing and recomputing
  whole layers: it recomputes elementwise work and LoRA's small products before any big matmul.
- `kbit_fp32` (4/8-bit bases, chosen at load): peft's `prepare_model_for_kbit_training` casts every weight that
  is not 4/8-bit (embeddings, norms, LM head) to fp32, so the residual stream runs in fp32; off, they stay in the
  compute dtype, as TRL 1.16 trains QLoRA. Off by default since the H200 run of 2026-12-03: 7B nf4, 2 rows,
  checkpointed, 4,970 -> 6,305 tokens/s (1.27x) and 13.89 -> 10.04 GiB, the same loss (12.647 / 12.644).
- `fused_loss`: Liger's fused linear cross-entropy on the target positions instead of the chunked
  loss (`penwright.trainer.losses.chunked_ce_sum`): the gradient of the LM head's input is computed in the
  forward, chunk by chunk, so the head's (N, V) product is not run a second time in backward.

The CPU path never takes them (`levers_for("cpu")` is all off): its behaviour does not change.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace

from penwright.trainer.backends.checkpointing import decoder_layers


@dataclass(frozen=True)
class Levers:
    compile_layers: bool = False
    fused_loss: bool = False
    activation_budget: float = 1.0  # compiled layers only
    kbit_fp32: bool = False  # 4/8-bit bases: peft's cast of the other weights to fp32 (off: their own dtype, as TRL)

    def tag(self) -> str:
        on = [name for name, value in (("compile", self.compile_layers), ("fused CE", self.fused_loss)) if value]
        if self.compile_layers and self.activation_budget < 1:
            on[0] = f"compile keeping {self.activation_budget:.0%} of activations"
        if self.kbit_fp32:
            on.append("fp32 k-bit preparation")
        return " + ".join(on) or "none"


# What the H200 run of 2026-12-02 kept (benchmarks/train_throughput_results.md): compilation paid everywhere
# (+24% at 0.5B, +16% at 7B checkpointed, +46% at 7B without checkpointing); the fused loss alone was slower in
# eager mode at 0.5B (-27%: its many small chunks are launch-bound there) but with compiled layers it was +2% and
# 21% less memory at 0.5B, and 1.6 GiB less at 7B, which is what lets more rows fit a memory budget. Together.
CUDA_DEFAULT = Levers(compile_layers=True, fused_loss=True)


# Below this many planned training tokens, `TrainingSettings.compile: auto` trains eager: the layer's compile is not
# repaid by the faster steps. On the H200 the daemon's 60-step retrain (61k tokens, 0.5B) took 60.0 s compiled and
# 29.5 s eager (benchmarks/device/turnaround.sh), so a compile costs ~30 s; at the measured gains (0.5B ~80k -> 100k
# tokens/s, 7B checkpointed ~10k -> 11.6k) it pays from ~12M tokens at 0.5B and ~2M at 7B. 4M sits between: the
# daemon's retrains (and a first adapter of a novel) train eager, long `penwright train` runs compile.
COMPILE_MIN_TOKENS = 4_000_000


def compile_pays(choice: bool | str, planned_tokens: int) -> bool:
    """Whether a run of `planned_tokens` compiles its layers under `TrainingSettings.compile` = `choice`."""
    if choice == "auto":
        return planned_tokens >= COMPILE_MIN_TOKENS
    return bool(choice)


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None and triton_available()


def levers_for(device: str, wanted: Levers | None = None, quantized: bool = False) -> Levers:
    """The levers a backend on `device` uses: `wanted` (default CUDA_DEFAULT) on CUDA, less what is not installed
    (both need Triton; the fused loss Liger) and no compilation of 4/8-bit layers (bitsandbytes' kernels are not
    traceable, and that pairing was not measured); none on the CPU."""
    if device != "cuda":
        return Levers()
    chosen = wanted or CUDA_DEFAULT
    return replace(
        chosen,
        compile_layers=chosen.compile_layers and triton_available() and not quantized,
        fused_loss=chosen.fused_loss and liger_available(),
    )


def partitioner_budget(levers: Levers):
    """The context a compiled layer must be traced in (first call, and any recompile) so that its backward keeps
    `activation_budget` of its activations; a no-op without compilation or at the default 1.0."""
    from contextlib import nullcontext

    if not levers.compile_layers or levers.activation_budget >= 1:
        return nullcontext()
    import torch

    return torch._functorch.config.patch(activation_memory_budget=levers.activation_budget)


def compile_decoder_layers(model, skip: set[int] = frozenset()) -> int:
    """Regional compilation: each decoder layer's forward through torch.compile (dynamic token counts: packed
    micro-batches differ in length), except the layers in `skip`, which go back to eager. Returns how many
    layers are compiled."""
    n = 0
    for i, layer in enumerate(decoder_layers(model)):
        if i in skip:
            layer._compiled_call_impl = None  # what nn.Module.compile set: back to the eager forward
        else:
            if layer._compiled_call_impl is None:
                layer.compile(dynamic=True)
            n += 1
    return n


def eager_decoder_layers(model) -> None:
    """Every decoder layer back to its eager forward."""
    compile_decoder_layers(model, skip=set(range(len(decoder_layers(model)))))


def is_compile_error(err: Exception) -> bool:
    """An error raised by torch.compile's tracer or code generator (not by the model's own computation)."""
    return type(err).__module__.startswith(("torch._dynamo", "torch._inductor"))


def fused_ce_sum(h, y, head):
    """Sum of token cross-entropies of (N, H) target states through the LM head (Liger's fused kernel:
    chunked logits, gradient of `h` computed in the forward; the frozen head gets no gradient)."""
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return loss(head.weight, h, y, head.bias).float()
