"""Batched decoding for the torch backend: rows that share an adapter selection advance in one forward pass.

A row is prefilled alone (its own batch-1 KV cache: the same forward pass as a request served alone), then
joins a KVBatch. The batch keeps its rows' caches left-padded to one length T: keys/values (B, H, T, D) per
layer, an attention mask (B, T) that hides the padding, and per-row position ids, so every row attends to
exactly its own tokens at its own positions. A membership change (a row joins after its prefill, or leaves
when finished or cancelled) rebuilds the cache once, before the next step: kept rows are selected, joining
rows are padded in, and leading columns that no remaining row needs are trimmed.
Each row samples from its own logits with its own seeded generator, so it gets what it would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from penwright.server.engine.sampling import apply_penalties, choose
from penwright.server.engine.types import SamplingParams


@dataclass(eq=False)
class Row:
    """One sequence's decoding state."""

    prompt: object  # (L,) prompt ids on the device, for the repetition penalty
    params: SamplingParams
    generator: object
    kv: list | None  # its own [(keys, values)] of shape (1, H, L, D) per layer, until it joins a batch
    length: int  # tokens in its cache = position id of the next input token
    last: int = -1  # newest sampled token: the next input
    generated: list[int] = field(default_factory=list)

    def sample(self, logits) -> int:
        """Next token from this row's (V,) logits; records it as the next input."""
        tok = choose(
            apply_penalties(logits.float(), self.params, self.prompt, self.generated), self.params, self.generator
        )
        self.generated.append(tok)
        self.last = tok
        return tok

    @property
    def plain_greedy(self) -> bool:
        p = self.params
        return p.temperature <= 0 and p.repetition_penalty == 1.0 and not (p.frequency_penalty or p.presence_penalty)


def batchable(cache) -> bool:
    """Only plain growing layers can be padded and re-batched (sliding-window and quantized caches cannot)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


def cache_of(layers: list) -> object:
    """A DynamicCache holding these [(keys, values)] as they are (DynamicCache.update would copy them)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache()
    for keys, values in layers:
        layer = DynamicLayer()
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        cache.layers.append(layer)
    return cache


def cache_kwarg(model) -> str:
    """The forward pass's name for the KV cache: `cache` (transformers >= 5.2x; `past_key_values` is deprecated
    there and goes in 5.40) or `past_key_values` (earlier 5.x)."""
    import inspect

    try:
        params = inspect.signature(
            model.get_base_model().forward if hasattr(model, "get_base_model") else model.forward
        ).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out):
    """The KV cache a forward pass returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out["past_key_values"]


class KVBatch:
    """The rows of one adapter selection and their shared, left-padded KV cache (engine thread only)."""

    pooled = False  # not the static pool (static_decode.StaticBatch): grows with its rows

    def __init__(self, device, forward, cache_kw: str = "past_key_values"):
        self.device = device
        self.forward = forward  # the backend's model call
        self.cache_kw = cache_kw
        self.rows: list[Row] = []
        self.cache = None
        self.mask = None  # (B, T) long, 1 = a real token; None while no row is padded

    def accepts(self, row: Row) -> bool:
        return True

    def close(self) -> None:
        self.rows, self.cache = [], None

    def decode(self, graphable: bool = False) -> list:
        """One step for the synced rows -> each one's next token or its sampling error, in self.rows order."""
        out = self.forward(**self.step_inputs())
        return self.sample(out.logits[:, -1])

    def sync(self, rows: list[Row]) -> None:
        """Make the cache hold exactly `rows` (a rebuild only when membership changed)."""
        if len(rows) == len(self.rows) and all(a is b for a, b in zip(rows, self.rows)):
            return
        import torch

        members = set(map(id, rows))
        keep = [i for i, r in enumerate(self.rows) if id(r) in members]
        old = {id(r) for r in self.rows}
        joining = [r for r in rows if id(r) not in old]
        order = [self.rows[i] for i in keep] + joining
        t_old = self.cache.layers[0].keys.shape[-2] if self.cache is not None and keep else 0
        t_new = max(r.length for r in order)
        shared = min(t_old, t_new)  # kept rows' real tokens all lie in the last `shared` columns
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        layers = []
        for layer_idx, parts in enumerate(self._layer_parts(joining)):
            merged = []
            for which, tensors in enumerate(parts):  # keys, then values
                ref = tensors[0]
                out = ref.new_zeros((len(order), ref.shape[1], t_new, ref.shape[3]))  # (B, H, T, D)
                if keep:
                    prev = self.cache.layers[layer_idx]
                    src = prev.keys if which == 0 else prev.values
                    out[: len(keep), :, t_new - shared :] = src.index_select(0, index)[:, :, t_old - shared :]
                for j, row in enumerate(joining):
                    out[len(keep) + j, :, t_new - row.length :] = tensors[j + 1][0]
                merged.append(out)
            layers.append(merged)
        for row in joining:
            row.kv = None  # its tensors now live in the batch
        self.rows, self.cache = order, cache_of(layers)
        self._set_mask(t_new)

    def _layer_parts(self, joining: list[Row]):
        """Per layer: ([a reference keys tensor, joining rows' keys...], [same for values])."""
        ref = self.cache.layers if self.cache is not None else None
        for layer_idx in range(len(joining[0].kv) if joining else len(ref)):
            ref_k = ref[layer_idx].keys if ref is not None else joining[0].kv[layer_idx][0]
            ref_v = ref[layer_idx].values if ref is not None else joining[0].kv[layer_idx][1]
            yield ([ref_k] + [r.kv[layer_idx][0] for r in joining], [ref_v] + [r.kv[layer_idx][1] for r in joining])

    def _set_mask(self, t: int) -> None:
        import torch

        if all(r.length == t for r in self.rows):
            self.mask = None
            return
        lengths = torch.tensor([r.length for r in self.rows], dtype=torch.long, device=self.device)
        self.mask = (torch.arange(t, device=self.device)[None, :] >= t - lengths[:, None]).long()

    def step_inputs(self) -> dict:
        """Forward-pass arguments for one decode step: each row's newest token at its own position."""
        import torch

        b = len(self.rows)
        ids = torch.tensor([[r.last] for r in self.rows], dtype=torch.long, device=self.device)  # (B, 1)
        kwargs = {"input_ids": ids, self.cache_kw: self.cache, "use_cache": True, "logits_to_keep": 1}
        if self.mask is not None:  # padded rows: mask (B, T+1), positions (B, 1)
            self.mask = torch.cat([self.mask, self.mask.new_ones((b, 1))], dim=1)
            kwargs["attention_mask"] = self.mask
            kwargs["position_ids"] = torch.tensor([[r.length] for r in self.rows], dtype=torch.long, device=self.device)
        return kwargs

    def sample(self, logits) -> list:
        """(B, V) logits -> each row's next token (or the exception its sampling raised), in self.rows order."""
        for row in self.rows:
            row.length += 1
        out: list = [None] * len(self.rows)
        fast = [i for i, r in enumerate(self.rows) if r.plain_greedy]
        if fast:  # one argmax and one device sync for all greedy rows
            picks = logits[fast].argmax(dim=-1).tolist() if len(fast) < len(self.rows) else logits.argmax(-1).tolist()
            for i, tok in zip(fast, picks):
                self.rows[i].generated.append(tok)
                self.rows[i].last = out[i] = tok
        for i, row in enumerate(self.rows):
            if out[i] is None:
                try:
                    out[i] = row.sample(logits[i])
                except Exception as err:  # this row's error only (e.g. NaN probabilities)
                    out[i] = err
        return out
