"""Static-cache decoding for the torch backend: one preallocated KV pool, the decode step replayed as CUDA graphs.

The pool holds keys/values of shape (S, H, T_max, D) per layer for S rows ("slots"). A row is prefilled as before
(its own dynamic cache, torch_backend.prefill) and, on joining a StaticBatch, its KV is copied into slot i at
columns [0, L). Each slot has its own write position (= the row's position id), so rows of any lengths decode
together with no padding shifts: the step writes each row's new key/value at its own column and attends over the
first T columns of its slot (T: a power of two above the longest row), masked to the columns it has written.

On CUDA the step (forward pass, greedy pick, next inputs) is captured once per (batch bucket B, span T) as a CUDA
graph and replayed: one launch instead of hundreds of kernels driven from Python. Buffers the graph reads and
writes (input ids, positions, logits, picked tokens, the pool) never move, and the adapter weights it reads are
the base layers' own tensors: merging or unmerging a LoRA adapter adds into them in place, so a hot-swap between
steps is seen by the next replay. A graph is replayed only while the forward pass would run exactly the plain
module tree (live adapter merged, or the base with nothing merged): other adapter selections run the same step
eagerly over the same pool. Anything the graphs cannot take (a row longer than the pool, a failed capture) runs
eagerly too, never fails a request for that reason.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
MIN_SPAN = 256


def buckets(limit: int, first: int, factor: int = 2) -> list[int]:
    """first, first*2, ... up to `limit`, with `limit` itself last."""
    out, b = [], first
    while b < limit:
        out.append(b)
        b *= factor
    return out + [limit]


class SlotCache:
    """What the model's attention layers call `cache.update` on, for one static step: writes each row's new
    key/value at its own position in the pool and returns the first `span` columns of its slots."""

    def __init__(self, keys: list, values: list, batch: int, span: int, pos):
        self.keys, self.values, self.batch, self.span = keys, values, batch, span
        self.pos = pos  # (B,) long: the column each row writes this step
        self.is_compileable = True

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        b = self.batch
        k, v = self.keys[layer_idx][:b], self.values[layer_idx][:b]  # (B, H, T_max, D) views into the pool
        index = self.pos.view(b, 1, 1, 1).expand(b, key_states.shape[1], 1, key_states.shape[3])
        k.scatter_(2, index, key_states)  # key_states: (B, H, 1, D)
        v.scatter_(2, index, value_states)
        return k[:, :, : self.span], v[:, :, : self.span]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # position ids are always passed: never asked for positions


class StaticDecoder:
    """The KV pool, step buffers and captured graphs of one backend (engine thread only)."""

    def __init__(
        self, backend, slots: int, max_tokens: int, graphs: bool, compile: bool = False, lookahead: bool | None = None
    ):
        self.backend = backend
        self.slots, self.max_tokens, self.use_graphs = slots, max_tokens, graphs
        # greedy rows: launch the next step before reading this one's picks (the graph feeds its own picks), so
        # the host's per-token work overlaps the GPU's; on by default with graphs (CPU steps are synchronous)
        self.lookahead = graphs if lookahead is None else lookahead
        self.fused = None  # fused_step.FusedStep, the graphable step of Llama-family models
        # torch.compile the step (inductor fuses the norms, rotary and activations: fewer, larger kernels) before
        # capturing it; dynamic shapes, so one compile serves every bucket; inductor caches it across restarts
        self.compile = compile
        self._compiled = None
        self.ready = False  # verified against the dynamic path; until then batches are dynamic
        self.disabled: str | None = None  # why static decoding is off for good
        self.busy = False  # a StaticBatch holds the pool
        self.graphs: dict[tuple[int, int], object] = {}
        self.failed: set[tuple[int, int]] = set()
        self._todo: list[tuple[int, int]] | None = None  # graphs still to capture in warm-up
        self._fingerprint: frozenset | None = None
        self._seen_changes = -1
        self._pool_handle = None
        self.stats = {"replays": 0, "eager_steps": 0, "captures": 0, "capture_seconds": 0.0, "warm_seconds": 0.0}
        self.stats["ahead_steps"] = 0  # steps launched before the previous one's tokens were read

    # ---- buffers -------------------------------------------------------------------------------
    def allocate(self) -> None:
        import torch

        model, device = self.backend.model, self.backend.device
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ["full_attention"])):
            raise ValueError("sliding-window or linear-attention layers")
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        dtype = next(model.parameters()).dtype
        shape = (self.slots, heads, self.max_tokens, dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)]
        self.layer_types = sorted(set(getattr(cfg, "layer_types", None) or ["full_attention"]))
        self.ids = torch.zeros(self.slots, dtype=torch.long, device=device)  # each slot's next input token
        self.pos = torch.zeros(self.slots, dtype=torch.long, device=device)  # ... and its position = write column
        self.cols = torch.arange(self.max_tokens, device=device)
        self.logits = torch.zeros((self.slots, cfg.vocab_size), dtype=torch.float32, device=device)
        self.picked = torch.zeros(self.slots, dtype=torch.long, device=device)  # greedy pick of each slot
        # the picks' host copy (pinned: an asynchronous copy the host waits for by an event, not a device sync)
        self.host = torch.zeros(self.slots, dtype=torch.long, pin_memory=self.use_graphs)
        self._copied = None
        self.fused = self.fused_step()
        self._fingerprint = self.fingerprint()
        self.batch_buckets = [b for b in BATCH_BUCKETS if b < self.slots] + [self.slots]
        self.span_buckets = buckets(self.max_tokens, min(MIN_SPAN, self.max_tokens))

    def fused_step(self):
        """The fused step (fused_step.py) for this model, or None where it does not apply (the modules' step)."""
        from penwright.server.engine.fused_step import FusedStep, Unsupported

        try:
            return FusedStep(self)
        except (Unsupported, AttributeError) as err:
            log.info("decode step: the model's own modules (%s)", err)
            return None

    def stage(self, n: int):
        """Start copying the first `n` picks to the host (after what is queued now); `picks()` waits for it."""
        import torch

        self.host[:n].copy_(self.picked[:n], non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()

    def picks(self, n: int) -> list[int]:
        self._copied.synchronize()
        return self.host[:n].tolist()

    def fits(self, row) -> bool:
        return row.length + row.params.max_tokens <= self.max_tokens

    def bucket(self, rows: int, longest: int) -> tuple[int, int]:
        """The smallest captured shape for `rows` rows whose longest has `longest` tokens after this step."""
        b = next(x for x in self.batch_buckets if x >= rows)
        return b, next(t for t in self.span_buckets if t >= longest)

    # ---- the step ------------------------------------------------------------------------------
    def body(self, b: int, span: int) -> None:
        """One decode step for slots [0, b): forward, greedy pick, next inputs. Captured as is on CUDA."""
        pos = self.pos[:b]
        mask = (self.cols[:span][None, :] <= pos[:, None])[:, None, None, :]  # (B, 1, 1, T): its own columns
        cache = SlotCache(self.keys, self.values, b, span, pos)
        kwargs = {
            "input_ids": self.ids[:b, None],
            "position_ids": pos[:, None],
            "use_cache": True,
            "attention_mask": {t: mask for t in self.layer_types},
            self.backend.cache_kw: cache,
            "logits_to_keep": 1,
        }
        out = self.backend.model(**kwargs)
        self.logits[:b].copy_(out.logits[:, -1])
        self.picked[:b].copy_(self.logits[:b].argmax(dim=-1))
        self.ids[:b].copy_(self.picked[:b])  # greedy rows feed their pick; others are overwritten from the host
        self.pos[:b].add_(1).clamp_(max=self.max_tokens - 1)  # padding slots must never write out of bounds

    def run(self, b: int, span: int, graphable: bool) -> None:
        if graphable:
            self.weights_unmoved()
        graph = self.graphs.get((b, span)) if graphable and self.use_graphs else None
        if graph is None and graphable and self.use_graphs and (b, span) not in self.failed:
            graph = self.capture(b, span)
        if graph is not None:
            graph.replay()
            self.stats["replays"] += 1
        elif graphable and not self.use_graphs:  # CPU: the fused (or compiled) step without graphs
            self.traced()(b, span)
            self.stats["eager_steps"] += 1
        else:
            self.body(b, span)
            self.stats["eager_steps"] += 1

    def traced(self):
        """The graphable step (fused where the model allows, else the modules'), compiled by torch.compile when
        asked (once; later shapes reuse it)."""
        step = self.fused or self.body
        if not self.compile:
            return step
        if self._compiled is None:
            import torch

            self._compiled = torch.compile(step, dynamic=True)
        return self._compiled

    # ---- graphs --------------------------------------------------------------------------------
    def capture(self, b: int, span: int):
        """Capture the step for (b, span). Runs the step for real twice first (a side-stream warm-up, as CUDA
        graphs need); the inputs are whatever the slots hold, and a re-run writes the same values. None on failure."""
        import torch

        t0 = time.perf_counter()
        saved = (self.ids.clone(), self.pos.clone())
        step = self.traced()
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # (the first call of a compiled step compiles it)
                    self.ids.copy_(saved[0]), self.pos.copy_(saved[1])
                    step(b, span)
            torch.cuda.current_stream().wait_stream(stream)
            self.ids.copy_(saved[0]), self.pos.copy_(saved[1])
            if self._pool_handle is None:
                self._pool_handle = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool_handle):
                step(b, span)
            self.ids.copy_(saved[0]), self.pos.copy_(saved[1])  # capture does not run the kernels; be sure
        except Exception as err:  # out of memory, an op that cannot be captured: this shape runs eagerly
            self.ids.copy_(saved[0]), self.pos.copy_(saved[1])
            if step is not self.body:  # the compiled step failed: capture the plain one from now on
                log.warning("compiling the decode step failed (%s); capturing it uncompiled", err)
                self.compile = False
                return self.capture(b, span)
            log.warning("CUDA graph capture for batch %d, span %d failed (%s); it decodes eagerly", b, span, err)
            self.failed.add((b, span))
            return None
        self.graphs[(b, span)] = graph
        self.stats["captures"] += 1
        self.stats["capture_seconds"] += time.perf_counter() - t0
        return graph

    def fingerprint(self) -> frozenset:
        """Addresses of the weights a replay reads (LoRA factors are not read: the graphs run merged/plain)."""
        return frozenset(p.data_ptr() for n, p in self.backend.model.named_parameters() if "lora_" not in n)

    def weights_unmoved(self) -> bool:
        """Graphs and the fused step read the weights at fixed addresses. LoRA merges add in place; should anything
        ever put a new tensor in (a variant that reassigns, a reload), fuse again and drop the graphs."""
        changes = self.backend.weight_changes()
        if changes == self._seen_changes or self._fingerprint is None:
            self._seen_changes = changes
            return True
        self._seen_changes = changes
        if self.fingerprint() == self._fingerprint:
            return True
        log.info("model weights moved; fusing and capturing the decode step again")
        self.graphs.clear()
        self._compiled = None
        if self.fused is not None:  # rebinds the modules' weights to views of new fused buffers
            split, self.fused = self.fused.split, self.fused_step()
            if self.fused is not None:
                self.fused.split = split
        self._fingerprint = self.fingerprint()
        return False

    # ---- warm-up -------------------------------------------------------------------------------
    def warm_up_step(self) -> bool:
        """One unit of warm-up (allocate + check, or one graph), between requests. True while more remains."""
        if self.disabled:
            return False
        t0 = time.perf_counter()
        try:
            if not self.ready:
                self.allocate()
                self.check()
                self.ready = True
                self._todo = [(b, t) for t in self.span_buckets for b in self.batch_buckets] if self.use_graphs else []
            elif self._todo:
                if not self.backend.graphable():  # idle: capture on the base, the live adapter re-merges later
                    self.backend.activate(None, None)
                self.pos.zero_(), self.ids.zero_()
                b, span = self._todo.pop(0)
                if (b, span) not in self.graphs:
                    self.capture(b, span)
        except Exception as err:
            self.disable(f"{type(err).__name__}: {err}")
        self.stats["warm_seconds"] += time.perf_counter() - t0
        return bool(self._todo) and not self.disabled

    def disable(self, why: str) -> None:
        log.warning("static-cache decoding is off (%s); the dynamic path serves", why)
        self.disabled, self.ready, self._todo = why, False, []
        self.graphs.clear()
        self.keys = self.values = []

    def check(self) -> None:
        """The static step must compute what the dynamic path computes, to the rounding of the model's dtype: the
        fused step with its fused GEMMs, else with the modules' own GEMMs, else the modules' step. (On the H200 the
        modules' static step matched the dynamic path bit for bit; a wrong step misses by far more than rounding.)"""
        import torch

        limit = 1e-3 if self.keys[0].dtype == torch.float32 else 3e-2  # else bf16/fp16 rounding
        for split in (False, True) if self.fused is not None else ():
            self.fused.split = split
            error = self.stats[f"check_error_fused{'_split' if split else ''}"] = self.compare(self.fused)
            if error < limit:
                return
        if self.fused is not None:
            log.warning("the fused decode step is off (rel. error %.2e)", error)
            self.fused = None
        error = self.stats["check_error_modules"] = self.compare(self.body)
        if not error < limit:
            raise ValueError(f"static decode logits differ from the dynamic path's (rel. error {error:.2e})")

    def compare(self, step, steps: int = 4) -> float:
        """A short prompt on the base model, a few steps each way fed the same tokens: the largest relative error
        of `step`'s logits against the dynamic path's."""
        from penwright.server.engine.torch_batch import KVBatch
        from penwright.server.engine.types import SamplingParams

        backend = self.backend
        backend.activate(None, None)
        prompt = [(7 + i % 50) % self.logits.shape[1] for i in range(16)]
        params = [SamplingParams(max_tokens=steps + 1)]
        (dyn_row,) = backend.prefill([prompt], params, None, None)
        (row,) = backend.prefill([prompt], params, None, None)
        dynamic = KVBatch(backend.device, backend.forward, backend.cache_kw)
        dynamic.sync([dyn_row])
        batch = StaticBatch(self)
        worst = 0.0
        try:
            batch.sync([row])
            for _ in range(steps):
                want = backend.forward(**dynamic.step_inputs()).logits[0, -1].float()
                dynamic.sample(want[None])
                step(1, self.bucket(1, row.length + 1)[1])
                row.length += 1
                error = float((self.logits[0] - want).norm() / want.norm().clamp_min(1e-6))
                worst = max(worst, error if error == error else float("inf"))  # NaN: as bad as it gets
                self.ids[0] = dyn_row.last  # both go on from the same token
        finally:
            batch.close()
            dynamic.close()
        return round(worst, 5)


class StaticBatch:
    """The rows of one adapter selection in the static pool (the KVBatch interface: sync, decode, accepts, close)."""

    pooled = True

    def __init__(self, decoder: StaticDecoder):
        self.d = decoder
        self.rows: list = []  # in slot order
        # a step launched ahead (lookahead) whose picks are not read yet: the device's ids/pos/KV are one token
        # past the rows' own state. Dropping it is always safe: the next step recomputes it from the rows' state
        self.ahead = False
        decoder.busy = True

    def accepts(self, row) -> bool:
        return len(self.rows) < self.d.slots and self.d.fits(row)

    def close(self) -> None:
        self.rows = []
        self.d.busy = False

    def sync(self, rows: list) -> None:
        """Slots [0, n) hold exactly `rows`: leavers' slots are filled by moving later rows down, joiners'
        prefill KV is copied in. Inputs are rewritten from the rows' own state."""
        if len(rows) == len(self.rows) and all(a is b for a, b in zip(rows, self.rows)):
            return
        self.ahead = False  # membership changed: the step ahead is dropped, inputs rewritten below
        members = set(map(id, rows))
        kept = [(i, r) for i, r in enumerate(self.rows) if id(r) in members]
        old = {id(r) for r in self.rows}
        joining = [r for r in rows if id(r) not in old]
        d = self.d
        for new, (was, row) in enumerate(kept):  # new <= was: a source is never overwritten before it is read
            if new != was:
                for layer in range(len(d.keys)):
                    d.keys[layer][new, :, : row.length].copy_(d.keys[layer][was, :, : row.length])
                    d.values[layer][new, :, : row.length].copy_(d.values[layer][was, :, : row.length])
        for slot, row in enumerate(joining, start=len(kept)):
            for layer, (k, v) in enumerate(row.kv):  # (1, H, L, D) each
                d.keys[layer][slot, :, : row.length].copy_(k[0])
                d.values[layer][slot, :, : row.length].copy_(v[0])
            row.kv = None
        self.rows = [r for _, r in kept] + joining
        self._write_inputs()

    def _write_inputs(self) -> None:
        import torch

        n, d = len(self.rows), self.d
        ids = [r.last for r in self.rows] + [0] * (d.slots - n)
        pos = [r.length for r in self.rows] + [0] * (d.slots - n)
        d.ids.copy_(torch.tensor(ids, dtype=torch.long))
        d.pos.copy_(torch.tensor(pos, dtype=torch.long))

    def decode(self, graphable: bool) -> list:
        """One step for the synced rows -> each one's next token or its sampling error, in self.rows order.
        Greedy rows on the graph path: the step after this one is launched before this one's picks are read."""
        d, n = self.d, len(self.rows)
        if not self.ahead:
            self._launch(graphable, 0)
        greedy = all(row.plain_greedy for row in self.rows)
        # a step ahead only where one of the rows will want another token after this one
        more = any(len(row.generated) + 1 < row.params.max_tokens for row in self.rows)
        self.ahead = d.lookahead and graphable and greedy and more
        d.stats["ahead_steps"] += self.ahead
        if self.ahead and d.use_graphs:
            d.stage(n)  # the picks' copy is queued before the next step overwrites them
            self._launch(graphable, 1)
            picks = d.picks(n)
        elif self.ahead:  # (CPU: steps are synchronous; the same bookkeeping)
            picks = d.picked[:n].tolist()
            self._launch(graphable, 1)
        else:
            picks = d.picked[:n].tolist()  # the one device sync of the step
        out: list = []
        overwrite = False
        for i, row in enumerate(self.rows):
            row.length += 1
            if row.plain_greedy:
                row.generated.append(picks[i])
                row.last = picks[i]
                out.append(picks[i])
                continue
            overwrite = True
            try:
                out.append(row.sample(d.logits[i]))
            except Exception as err:  # this row's error only
                out.append(err)
        if overwrite:  # sampled rows feed their own token, not the greedy pick
            self._write_inputs()
        return out

    def _launch(self, graphable: bool, ahead: int) -> None:
        """Queue one step for the device state, which is `ahead` tokens past the rows' own."""
        n = len(self.rows)
        b, span = self.d.bucket(n, min(max(r.length for r in self.rows) + ahead + 1, self.d.max_tokens))
        self.d.run(b, span, graphable)
