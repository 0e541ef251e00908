"""The engine's bookkeeping of running requests: sequences, decode batches, counters, prefill grouping."""

from __future__ import annotations

from dataclasses import dataclass, field

from penwright.server.engine.text import TextStream
from penwright.server.engine.types import Channel, GenerationRequest


@dataclass(eq=False)
class Seq:
    """One running request."""

    req: GenerationRequest
    channel: Channel
    adapter: str | None
    prompt_tokens: int
    stream: TextStream
    it: object = None  # one-at-a-time: the backend's token iterator
    row: object = None  # batched: the backend's row state, decoded in `batch`
    batch: Batch | None = None
    generated: int = 0


@dataclass(eq=False)
class Batch:
    """Running sequences of one adapter selection (adapter + scale) that decode together (at most max_batch)."""

    adapter: str | None
    scale: float | None
    kv: object  # the backend's KVBatch
    seqs: list[Seq] = field(default_factory=list)


@dataclass
class Stats:
    served: int = 0
    failed: int = 0
    cancelled: int = 0
    swaps: list[float] = field(default_factory=list)  # seconds the engine thread spent per hot-swap


def prefill_chunks(fresh: list[tuple[Seq, list[int]]], max_batch: int, tokens: int) -> list[list]:
    """Requests arriving together -> prefill passes: one adapter selection each, in arrival order, at most
    `max_batch` prompts and `tokens` padded tokens (prompts x the longest) per pass; a longer prompt goes alone."""
    groups: dict[tuple, list] = {}
    for seq, ids in fresh:
        groups.setdefault((seq.adapter, seq.req.adapter_scale), []).append((seq, ids))
    chunks = []
    for members in groups.values():
        chunk: list = []
        for seq, ids in members:
            longest = max([len(ids)] + [len(i) for _, i in chunk])
            if chunk and (len(chunk) == max_batch or (len(chunk) + 1) * longest > tokens):
                chunks.append(chunk)
                chunk = []
            chunk.append((seq, ids))
        chunks.append(chunk)
    return chunks
