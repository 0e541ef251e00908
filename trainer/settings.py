"""Settings schemas of the trainer: base model, curation, training.

Defaults live here and only here; presets in `configs/` and `penwright.yaml`
override them, CLI flags are derived from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_PERSONA_SYSTEM = (
    "You are the author's writing partner. Write in the author's own voice: their vocabulary, "
    "sentence rhythm, dialogue and imagery. Return only the prose."
)


class Strict(BaseModel):
    """Base for every settings model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(Strict):
    base: str = Field(
        "builtin:tiny",
        description="Base model: a local folder, a hub id already in the local cache "
        "(e.g. Qwen/Qwen2.5-0.5B-Instruct), or builtin:tiny (a demo model built from your own text).",
    )
    backend: Literal["auto", "cuda", "mlx", "cpu"] = Field("auto", description="auto picks CUDA, then MLX, then CPU.")
    quantization: Literal["none", "4bit", "8bit"] = Field("none", description="4bit/8bit need CUDA (bitsandbytes).")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_context_tokens: int = Field(2048, ge=128, description="Longest sequence the trainer and server use.")


class ExtraDataset(Strict):
    path: str = Field(description="A JSONL file of ChatML ({messages}) or Alpaca ({instruction,input,output}) rows.")
    format: Literal["chatml", "alpaca", "auto"] = "auto"
    weight: float = Field(1.0, gt=0, description="Sampling weight relative to the curated manuscript set (1.0).")


class CurationSettings(Strict):
    target_tokens: int = Field(800, ge=16, description="Chunk size aimed for, in the model's tokens.")
    max_tokens: int = Field(1500, ge=16, description="No chunk is longer than this.")
    min_tokens: int = Field(32, ge=1, description="Shorter chunks (after a scene break) are dropped.")
    overlap_tokens: int = Field(
        0, ge=0, description="Tokens repeated from the end of one chunk at the start of the next."
    )
    min_paragraph_words: int = Field(0, ge=0, description="Drop paragraphs under this many words (persona preset: 60).")
    pair_types: list[Literal["auto", "continuation", "fim", "chat", "neutral", "info_dropout", "abstract", "lore"]] = (
        Field(
            default_factory=lambda: ["auto"],
            description="Which training rows to build from each chunk. auto: the inline routes the editor uses "
            "(continuation + fim), plus a quarter of chat-frame rows on an instruct model; add lore for "
            "lore-conditioned "
            "rows, or the persona pairs (neutral, info_dropout, abstract) for chat rewriting (README: The voice).",
        )
    )
    context_tokens: int = Field(256, ge=16, description="Text before a passage that its continuation row carries.")
    degrade_with: Literal["rules", "model", "upstream"] = Field(
        "rules",
        description="How degraded inputs of persona pairs are made: offline rules, the base model, or upstream.",
    )
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of chunks held out, chosen by content hash.")
    seed: int = 0
    system_prompt: str = DEFAULT_PERSONA_SYSTEM
    extra_datasets: list[ExtraDataset] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sizes(self) -> CurationSettings:
        if self.target_tokens > self.max_tokens:
            raise ValueError(f"target_tokens ({self.target_tokens}) must not exceed max_tokens ({self.max_tokens})")
        if self.overlap_tokens >= self.target_tokens:
            raise ValueError("overlap_tokens must be smaller than target_tokens")
        return self


class TrainingChoice(Strict):
    """What penwright.yaml says about training: a preset name plus overrides of its fields."""

    preset: str = Field(
        "fast",
        description="A preset from configs/ (fast, regular, dora, kl, dora_kl, persona_14b_4bit) or a YAML path.",
    )
    overrides: dict = Field(default_factory=dict, description="Any training field, e.g. {max_steps: 50, rank: 8}.")


class TrainingSettings(Strict):
    """Everything a training run needs besides the data and the base model. Presets in configs/ set these."""

    # adapter
    method: Literal["lora", "dora"] = Field(
        "lora", description="lora, or dora (weight-decomposed LoRA, peft use_dora)."
    )
    rslora: bool = Field(False, description="Rank-stabilised LoRA: scale alpha/sqrt(rank) instead of alpha/rank.")
    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha; the update is scaled by alpha/rank (mlx-lm's `scale`).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    targets: Literal["attn", "attn_mlp", "auto"] = Field(
        "attn_mlp", description="attn: q/k/v/o; attn_mlp: plus gate/up/down; auto: every linear layer of the blocks."
    )
    quantization: Literal["model", "none", "4bit", "8bit"] = Field(
        "model", description="Base-model loading for training; `model` follows model.quantization. 4bit/8bit need CUDA."
    )
    # optimisation
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(10, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decays to this share of the peak rate.")
    batch_size: int = Field(4, ge=1, description="Rows per micro-batch (packed rows when packing is on).")
    grad_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float = Field(1.0, gt=0)
    max_seq_length: int | None = Field(None, ge=32, description="Tokens per row; default model.max_context_tokens.")
    packing: bool = Field(True, description="Pack short samples into full rows; attention stays within each sample.")
    completion_only: bool = Field(True, description="Loss only on the assistant target; the prompt is masked.")
    attention: Literal["auto", "sdpa", "varlen", "causal"] = Field(
        "auto",
        description="Packed-row attention. varlen: FlashAttention varlen kernel, no padding or mask (CUDA; "
        "auto picks it there); sdpa: a block-diagonal mask built from the restarting position ids; causal: plain "
        "causal attention over the whole row, samples see the ones before them (auto picks it on the CPU, where a "
        "mask leaves SDPA's fast kernel: benchmarks/cpu_train_speed.py).",
    )
    loss_chunk_tokens: int = Field(
        2048,
        ge=64,
        description="Cross-entropy in chunks of this many target tokens "
        "(full-vocabulary fp32 logits are never materialised for the whole batch).",
    )
    kl_lambda: float = Field(0.0, ge=0, description="KL-regularised SFT: weight of KL(base || adapter); 0 disables.")
    kl_tau: float = Field(1.0, gt=0, description="Temperature of the KL term (loss scaled by tau^2).")
    gradient_checkpointing: bool | float = Field(
        False,
        description="Recompute layer activations in backward to save memory: true (every decoder layer), "
        "false, or a fraction of the layers (evenly spaced, e.g. 0.5): each layer left out is faster and keeps its "
        "activations. MLX: any value above 0 means every layer.",
    )
    recompute_elementwise: bool = Field(
        False,
        description="Layers that gradient_checkpointing leaves out keep only the outputs of their big matmuls "
        "and attention, and recompute the cheap rest in backward (norms, activations, RoPE, dropout, LoRA's small "
        "products): about a quarter of their activation memory for a few percent more time. Torch backend only.",
    )
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="CUDA: torch.compile each decoder layer (fuses the elementwise work; +16-46% tokens/s on an "
        "H200, after a compile of tens of seconds). auto: only when the run plans enough tokens to repay the "
        "compile (penwright.trainer.backends.levers.COMPILE_MIN_TOKENS); true / false: always / never. Ignored "
        "on the CPU and MLX, and for 4/8-bit bases.",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the GPU has it, else fp32."
    )
    seed: int = 0
    # stopping
    max_steps: int | None = Field(200, ge=1, description="Optimizer steps; null = run `epochs` epochs.")
    epochs: float = Field(1.0, gt=0, description="Used when max_steps is null.")
    max_minutes: float | None = Field(None, gt=0, description="Wall-clock cap; the run saves and stops.")
    plateau_patience: int | None = Field(
        None,
        ge=1,
        description="Stop when smoothed train loss has not improved "
        "by plateau_min_delta for this many steps; null disables.",
    )
    plateau_min_delta: float = Field(0.01, ge=0)
    plateau_min_steps: int = Field(20, ge=0, description="No plateau stop before this step.")
    plateau_smoothing: float = Field(0.9, ge=0, lt=1, description="EMA factor of the smoothed loss.")
    eval_every: int | None = Field(50, ge=1, description="Evaluate on valid.jsonl every N steps (and at the end).")
    eval_max_rows: int = Field(256, ge=1, description="Evaluate on at most this many validation rows.")
    early_stop_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without a better eval loss."
    )
    # outputs
    save_every: int = Field(50, ge=1, description="Checkpoint (resumable) every N steps.")
    keep_best: int = Field(2, ge=1, description="Checkpoints kept by eval loss (the latest is kept too, for resume).")
    log_every: int = Field(1, ge=1)
    report_to: Literal["auto", "tensorboard", "none"] = Field(
        "auto",
        description="Training curves as TensorBoard event files in the run's tensorboard/ folder (loss, eval "
        "loss, learning rate, tokens/s); auto: when the tensorboard package is installed. The dashboard is unchanged.",
    )
    oom_ladder: bool = Field(True, description="On CUDA out-of-memory, retry with less memory and record the rung.")
    fit_memory: bool = Field(
        True,
        description="Before the first step, pick the rows per micro-batch (a divisor of batch_size x "
        "grad_accumulation, which stays the rows of an optimizer step) and the share of checkpointed layers that "
        "run fastest within memory_budget_gib; replaces batch_size, grad_accumulation and gradient_checkpointing. "
        "Torch backend; on the CPU only with memory_budget_gib set.",
    )
    memory_budget_gib: float | None = Field(
        None, gt=0, description="Memory the fit plans for; default: what the GPU has free (92% of it) at the start."
    )
    # MLX backend only
    mlx_num_layers: int = Field(-1, description="MLX: how many of the last layers get adapters; -1 = all.")

    @field_validator("gradient_checkpointing")
    @classmethod
    def _fraction(cls, v: bool | float) -> bool | float:
        if not isinstance(v, bool) and not 0.0 <= v <= 1.0:
            raise ValueError("must be true, false or a fraction of the layers between 0 and 1")
        return v

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def checkpoint_fraction(self) -> float:
        """Share of decoder layers recomputed in backward (0.0 none, 1.0 all)."""
        return float(self.gradient_checkpointing)
