"""What the engine asks of a serving backend: one required surface, and optional capabilities the backend declares.

`ServingBackend` is what every backend implements (torch_backend.TorchBackend, mlx_backend.MlxBackend). The
optional parts (batched decoding, chunked prefill, background warm-up, giving CPU cores back, scoring, merging the
live adapter) are small Protocols of their own; a backend lists the ones it implements in its `capabilities` class
attribute, and `check_backend` holds the class to that declaration once, when the Engine is built. The engine then
reads the resulting `Capabilities` and never probes the backend (vLLM's `ModelRunnerBase`, peft's `tuners/<method>/`).

Attributes set by `load()` (tokenizer, context_length, eos_ids) are part of the surface but cannot be checked
before it runs; the methods and the declared capabilities can, and are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from penwright.server.engine.types import SamplingParams

Capability = Literal["batched_decoding", "chunked_prefill", "warm_up", "share_cpu", "score", "merge_live"]


class ServingBackend(Protocol):
    """The surface the engine uses. Every method runs on the engine thread except `prepare_adapter` and the
    tokenizer methods (`encode`, `decode`, `vocab`), which the engine calls under its own lock."""

    name: str  # "torch" | "mlx": shown in /v1/status and errors
    capabilities: frozenset[Capability]  # the optional Protocols below that this backend implements
    tokenizer: Any  # a Hugging Face tokenizer (chat templates), set by load()
    context_length: int  # set by load()
    eos_ids: set[int]  # set by load()

    def load(self) -> None: ...
    def thread_context(self) -> AbstractContextManager: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def vocab(self) -> list[str]: ...
    def adapters(self) -> list[str]: ...
    def prepare_adapter(self, path: Path) -> object | None:
        """Read an adapter's files off the engine thread; what it returns is handed to `add_adapter`."""
        ...

    def add_adapter(self, name: str, path: Path, scale: float = 1.0, prepared: object | None = None) -> None: ...
    def remove_adapter(self, name: str) -> None: ...
    def open(self, ids: list[int], adapter: str | None, scale: float | None, params: SamplingParams) -> Iterator[int]:
        """One sequence's tokens, one per `next()` (the first runs the prefill); closing it frees its cache."""
        ...

    def info(self) -> dict: ...


class BatchedDecoding(Protocol):
    """ "batched_decoding": prefill prompts of one adapter selection together, then decode their rows together."""

    def prefill(
        self, prompts: list[list[int]], params: list[SamplingParams], adapter: str | None, scale: float | None
    ) -> list: ...
    def new_batch(self, first: object = None) -> object: ...
    def step(self, batch: object, rows: list, adapter: str | None, scale: float | None) -> list: ...


class ChunkedPrefill(Protocol):
    """ "chunked_prefill": prefill one prompt in pieces, so that running batches decode between them. `start_prefill`
    makes a row with none of its prompt cached; each `prefill_piece` runs its next `tokens` prompt tokens on top of
    what is cached, and after the last one samples the first token (`row.last`) and returns True. The finished row
    is what `prefill` would have returned for that prompt alone: it joins a batch the same way."""

    def start_prefill(self, ids: list[int], params: SamplingParams) -> object: ...
    def prefill_piece(self, row: object, tokens: int, adapter: str | None, scale: float | None) -> bool: ...


class WarmUp(Protocol):
    """ "warm_up": work done between requests (static KV, CUDA graphs); True while more remains."""

    def warm_up(self) -> bool: ...


class SharesCpu(Protocol):
    """ "share_cpu": leave `busy_elsewhere` cores to the training child (0 takes them back)."""

    def share_cpu(self, busy_elsewhere: int) -> None: ...


class Scores(Protocol):
    """ "score": log-probabilities of given tokens (the `logprobs` of a completion's prompt)."""

    def score(self, ids: list[int], last: int, adapter: str | None, scale: float | None, top: int) -> list: ...


class MergesLive(Protocol):
    """ "merge_live": the engine sets `merge_target` to the live adapter while every running request uses it, so
    the backend may fold it into the weights."""

    merge_target: str | None


PROTOCOLS: dict[Capability, type] = {
    "batched_decoding": BatchedDecoding,
    "chunked_prefill": ChunkedPrefill,
    "warm_up": WarmUp,
    "share_cpu": SharesCpu,
    "score": Scores,
    "merge_live": MergesLive,
}


@dataclass(frozen=True)
class Capabilities:
    """What the engine may ask of its backend beyond `ServingBackend`; read once, at Engine construction."""

    batched_decoding: bool = False
    chunked_prefill: bool = False
    warm_up: bool = False
    share_cpu: bool = False
    score: bool = False
    merge_live: bool = False


def members(protocol: type) -> tuple[list[str], list[str]]:
    """(methods, attributes) a Protocol declares, its own and its bases' below Protocol."""
    methods, attributes = [], []
    for klass in protocol.__mro__:
        if klass in (Protocol, object, Any) or not getattr(klass, "_is_protocol", False):
            continue
        methods += [k for k, v in vars(klass).items() if callable(v) and not k.startswith("_")]
        attributes += [k for k in getattr(klass, "__annotations__", {}) if not k.startswith("_")]
    return methods, attributes


def check_backend(backend: object) -> Capabilities:
    """Hold `backend` to the contract: the required methods, and every capability it declares implemented.
    Raises TypeError naming what is missing (a programming error, not a user's)."""
    kind = type(backend).__name__
    declared = getattr(type(backend), "capabilities", None)
    if not isinstance(declared, frozenset):
        raise TypeError(f"{kind} declares no `capabilities` frozenset (server/engine/contracts.py)")
    unknown = sorted(set(declared) - set(get_args(Capability)))
    if unknown:
        raise TypeError(f"{kind} declares unknown capabilities {unknown}; known: {list(get_args(Capability))}")
    missing = _missing(backend, ServingBackend, attributes=False)  # the attributes arrive with load()
    for cap in sorted(declared):
        missing += [f"{m} (for {cap!r})" for m in _missing(backend, PROTOCOLS[cap], attributes=True)]
    if missing:
        raise TypeError(f"{kind} does not implement the serving contract: missing {', '.join(missing)}")
    return Capabilities(**{f.name: f.name in declared for f in fields(Capabilities)})


def _missing(backend: object, protocol: type, attributes: bool) -> list[str]:
    methods, attrs = members(protocol)
    gone = [m for m in methods if not callable(getattr(backend, m, None))]
    if attributes:
        gone += [a for a in attrs if not hasattr(backend, a)]
    return gone
