"""Settings schemas of the trainer: base model, curation, training.

Defaults live here and only here; presets in `configs/` and `penwright.yaml`
override them, CLI flags are derived from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    overlap_tokens: int = Field(0, ge=0, description="Tokens repeated from the end of one chunk at the start of the next.")
    min_paragraph_words: int = Field(0, ge=0, description="Drop paragraphs under this many words (persona preset: 60).")
    pair_types: list[Literal["continuation", "fim", "neutral", "info_dropout", "abstract", "lore"]] = Field(
        default_factory=lambda: ["continuation", "fim", "neutral", "info_dropout", "abstract"],
        description="Which training pairs to build from each chunk.",
    )
    degrade_with: Literal["rules", "model", "upstream"] = Field(
        "rules", description="How degraded inputs of persona pairs are made: offline rules, the base model, or upstream."
    )
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of chunks held out, chosen by content hash.")
    seed: int = 0
    system_prompt: str = DEFAULT_PERSONA_SYSTEM
    extra_datasets: list[ExtraDataset] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sizes(self) -> "CurationSettings":
        if self.target_tokens > self.max_tokens:
            raise ValueError(f"target_tokens ({self.target_tokens}) must not exceed max_tokens ({self.max_tokens})")
        if self.overlap_tokens >= self.target_tokens:
            raise ValueError("overlap_tokens must be smaller than target_tokens")
        return self


class TrainingChoice(Strict):
    """What penwright.yaml says about training: a preset name plus overrides of its fields."""

    preset: str = Field("fast", description="A preset from configs/ (fast, regular, dora, kl, dora_kl, persona_14b_4bit) or a YAML path.")
    overrides: dict = Field(default_factory=dict, description="Any training field, e.g. {max_steps: 50, rank: 8}.")
