"""Settings schema of the lore component. Defaults live here only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    folder: str = Field("lore", description="The lore folder (characters, places, world notes), relative to the project.")
    embedding_model: str = Field(
        "builtin:all-MiniLM-L6-v2",
        description="A sentence-transformers model folder; builtin:all-MiniLM-L6-v2 loads offline from its package.",
    )
    budget_tokens: int = Field(384, ge=0, description="Most tokens of lore injected into one request.")
    vector_top_k: int = Field(6, ge=0, description="Entries recalled by meaning (on top of name and keyword hits).")
    min_key_length: int = Field(3, ge=1, description="Keys shorter than this never trigger on their own.")
    enabled: bool = True
