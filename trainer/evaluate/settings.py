"""Settings of an evaluation. Defaults live here only; `penwright eval`/`compare` flags derive from them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PERSONA_PROMPTS = ["The Stock Market", "A Rainy Afternoon", "The Letter", "Ambition", "An Old House", "Money"]


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    n_samples: int = Field(
        12, ge=1, description="Prompts generated from (continuations of held-out passages plus persona prompts)."
    )
    persona_share: float = Field(
        0.25, ge=0.0, le=1.0, description="Share of prompts that are bare persona nouns ('The Stock Market')."
    )
    max_new_tokens: int = Field(96, ge=1, description="Tokens generated per prompt.")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int = Field(0, description="Sampling seed; the same seed gives the same samples.")
    perplexity_max_tokens: int = Field(512, ge=16, description="Held-out passages are cut to this many tokens.")
    max_heldout: int = Field(64, ge=1, description="At most this many held-out rows/passages enter perplexity.")
    copy_words: int = Field(
        12, ge=3, description="A sample 'copies' when it repeats more than this many training words in a row."
    )
    max_copy_share: float = Field(0.25, ge=0.0, le=1.0, description="Copy guard: most samples allowed to copy.")
    max_repetition: float = Field(0.3, ge=0.0, le=1.0, description="Degeneration guard: highest mean repetition rate.")
    min_distinct_2: float = Field(0.5, ge=0.0, le=1.0, description="Degeneration guard: lowest distinct-2.")
    banned: list[str] = Field(
        default_factory=list, description="Strings that must never appear in generations, beyond chat tags."
    )
    persona_prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PERSONA_PROMPTS))

    def limits(self):
        from penwright.trainer.evaluate.guards import GuardLimits

        return GuardLimits(
            copy_words=self.copy_words,
            max_copy_share=self.max_copy_share,
            max_repetition=self.max_repetition,
            min_distinct_2=self.min_distinct_2,
        )
