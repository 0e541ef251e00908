"""Settings schema of the lore component. Defaults live here only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    folder: str = Field(
        "lore", description="The lore folder (characters, places, world notes), relative to the project."
    )
    embedding_model: str = Field(
        "builtin:all-MiniLM-L6-v2",
        description="A sentence-transformers model folder; builtin:all-MiniLM-L6-v2 loads offline from its package.",
    )
    embedding_precision: str = Field(
        "auto",
        pattern="^(auto|float32|bfloat16)$",
        description="Arithmetic of the embedding model on CPU: auto = bfloat16 where the CPU does it natively "
        "(avx512_bf16 or AMX; ~1.7x faster, cosine 0.9999 to float32), else float32.",
    )
    budget_tokens: int = Field(384, ge=0, description="Most tokens of lore injected into one request.")
    vector_top_k: int = Field(6, ge=0, description="Entries recalled by meaning (on top of name and keyword hits).")
    min_key_length: int = Field(3, ge=1, description="Keys shorter than this never trigger on their own.")
    common_word_zipf: float = Field(
        4.0,
        ge=0,
        description="A one-word name or key at least this common in English (wordfreq Zipf scale) triggers only "
        "capitalised and mid-sentence; in lower case it never triggers.",
    )
    min_similarity: float = Field(
        0.3, ge=-1, le=1, description="Entries recalled by meaning need at least this cosine similarity."
    )
    scan_chars: int = Field(3000, ge=100, description="Characters before the cursor searched for names and keys.")
    query_chars: int = Field(
        400, ge=50, description="Characters before the cursor used as the meaning query (about 90 tokens)."
    )
    max_file_bytes: int = Field(
        1_000_000, ge=1000, description="Lore files larger than this are skipped with a message."
    )
    enabled: bool = True
