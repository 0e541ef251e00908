"""The engine: one thread owns the model; requests and control calls reach it through one queue.

Scheduling: new requests are admitted (prefilled) as soon as they arrive, so a fresh
inline completion waits for at most one decode step, not for the running ones to finish.
With `max_batch` > 1 (backends with `prefill`/`step`: torch), requests arriving together
are prefilled together and running sequences that share an adapter selection (adapter +
scale) decode together, up to `max_batch` per forward pass; batches of different selections
take turns, one step each. With `max_batch` 1 (and on MLX) the active sequences advance one
token each in turn.
A prompt longer than `prefill_chunk` that arrives while others decode is prefilled in pieces (backends that
declare "chunked_prefill": torch), one piece per round of decode steps, so running streams wait at most one
piece's time per token; alone, it takes one pass as any other prompt (the fastest first token).
Adapter changes (load, hot-swap, unload) run on the same thread, between steps,
so no forward pass ever sees a half-loaded adapter; a request keeps the adapter it
started with to its last token, and an adapter is unloaded only when no running
request uses it.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from penwright.errors import ServeError
from penwright.server.engine.contracts import check_backend
from penwright.server.engine.schedule import Batch, Seq, Stats, prefill_chunks
from penwright.server.engine.text import TextStream
from penwright.server.engine.types import ADAPTER_NAME, BASE, LIVE, Channel, Delta, Finished, GenerationRequest, Started

log = logging.getLogger(__name__)


class RequestError(ServeError):
    """A request the engine cannot serve as asked (bad adapter, prompt too long...): HTTP 400/404."""

    def __init__(
        self, message: str, hint: str = "", param: str | None = None, code: str = "invalid_request", status: int = 400
    ):
        super().__init__(message, hint)
        self.param, self.code, self.status = param, code, status


class Engine:
    """Owns a backend (TorchBackend or MlxBackend) on its own thread. See docs/architecture.md "Engine"."""

    def __init__(
        self,
        backend,
        max_active: int = 16,
        max_loaded_adapters: int = 4,
        max_queue: int = 256,
        max_batch: int = 8,
        prefill_tokens: int | None = None,
        prefill_chunk: int | None = None,
    ):
        self.backend = backend
        self.caps = check_backend(backend)  # its declared contract, checked once (contracts.py)
        self.max_active = max_active
        # sequences per forward pass; 1 = one sequence per step, in turn (backends without step() always are)
        self.max_batch = max_batch if self.caps.batched_decoding else 1
        # batched: requests arriving together (one adapter selection) are prefilled in one pass of up to this
        # many tokens, padded to the longest. On a CPU more costs their first tokens more than it saves (2048);
        # a GPU's prefill of a few thousand tokens is bound by kernel launches, not arithmetic, so requests that
        # arrive together share one pass there (8192). None: chosen by the device once the model is loaded
        self.prefill_tokens = prefill_tokens
        # a longer prompt arriving while others decode is prefilled this many tokens per round of decode steps.
        # CPU 512 (benchmarks/serve_latency_results.md "Chunked prefill"; the 31M base, a 3,500-token prompt): a
        # running stream's longest wait falls from 3.8 s to 0.8 s (256: 0.45 s, 1024: 1.6 s) for ~15% on the long
        # prompt's TTFT (256: ~20%); its pieces cost 5-10% more than one pass, the rest is the stream's steps between
        # them. GPU 2048: a piece there is a launch-bound pass (a 2 x 1,000-token prefill of the 0.5B: 24 ms on the
        # H200), and pieces are not shared between prompts, so 1,000-token inline prompts arriving together
        # mid-decode keep their one shared pass. None: chosen by the device once the model is loaded
        self.prefill_chunk = prefill_chunk
        self._prefilling: deque[Seq] = deque()  # chunked prefills in progress, oldest first (its row: seq.row)
        self._since_piece = 0  # decode steps since the last piece: one piece per round of the batches
        self._batches: list[Batch] = []
        self.max_queue = max_queue  # requests waiting beyond this are refused (HTTP 429) rather than piling up
        self.max_loaded_adapters = max_loaded_adapters
        self.live: str | None = None
        self.stats = Stats()
        self._queue: queue.Queue = queue.Queue()
        self._waiting: deque = deque()
        self._active: list[Seq] = []
        self._turn = itertools.count()
        self._in_use: dict[str | None, int] = {}
        self._last_used: dict[str, float] = {}
        self._unload_pending: set[str] = set()
        self._ready = threading.Event()
        self._stopping = False
        self._load_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._tok_lock = threading.Lock()
        self._warming = self.caps.warm_up  # background warm-up (static KV, CUDA graphs) still to do
        self.fim_style: str | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> Engine:
        """Start the thread and wait until the model is loaded; raises what loading raised."""
        self._thread = threading.Thread(target=self._run, name="penwright-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ServeError("the model did not load in time", "Check the daemon log; a large model on CPU is slow.")
        if self._load_error is not None:
            raise self._load_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set() and not self._load_error

    # ---- requests -------------------------------------------------------------------------------
    def submit(self, req: GenerationRequest) -> Channel:
        """Queue a generation; read Started, Delta..., Finished (or an exception) from the channel."""
        channel = Channel()
        if self._stopping or not self.running:
            channel.put(ServeError("the engine is not running", "Restart the daemon (`penwright serve`)."))
        elif self._queue.qsize() + len(self._waiting) >= self.max_queue:
            channel.put(
                RequestError(
                    f"the server is busy: {self.max_queue} requests are already waiting",
                    "Retry in a moment.",
                    code="rate_limit_exceeded",
                    status=429,
                )
            )
        else:
            self._queue.put(("request", req, channel))
        return channel

    def call(self, fn, timeout: float | None = 120.0):
        """Run `fn()` on the engine thread between decode steps and return its result."""
        if threading.current_thread() is self._thread:
            return fn()
        if not self.running:
            raise ServeError("the engine is not running", "Restart the daemon (`penwright serve`).")
        fut: Future = Future()
        self._queue.put(("call", fn, fut))
        return fut.result(timeout)

    def share_cpu(self, busy_elsewhere: int) -> None:
        """Leave `busy_elsewhere` CPU cores to another process (the training child); 0 takes them back.
        A no-op for backends without CPU threads to give (CUDA, MLX)."""
        if self.caps.share_cpu:
            self.call(lambda: self.backend.share_cpu(busy_elsewhere))

    # ---- adapters -------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: Path | str, scale: float = 1.0) -> float:
        """Load an adapter beside the others (no-op if loaded). Returns seconds the engine spent loading."""
        check_adapter_name(name)
        if name in self.adapters():
            return 0.0
        prepared = self.backend.prepare_adapter(Path(path))  # file reads off the engine thread
        return self.call(lambda: self._load(name, Path(path), scale, prepared))

    def set_live(
        self, name: str | None, path: Path | str | None = None, scale: float = 1.0, unload_previous: bool = True
    ) -> float:
        """Hot-swap: load `name` beside the live one, switch between requests, unload the old one once unused.

        `None` makes the base model live. Rollback is the same call with the older version.
        Returns the seconds the engine thread spent (load + switch): requests pause only that long.
        """
        spent = 0.0
        if name is not None:
            check_adapter_name(name)
            if name not in self.adapters():
                if path is None:
                    raise ServeError(f"adapter '{name}' is not loaded and no path was given")
                spent += self.load_adapter(name, path, scale)

        def switch() -> float:
            t0 = time.perf_counter()
            if name is not None:  # on the engine thread: it may have been unloaded since the check above
                self._unload_pending.discard(name)
                if name not in self.backend.adapters():
                    if path is None:
                        raise ServeError(f"adapter '{name}' is not loaded and no path was given")
                    self._load(name, Path(path), scale)
            old, self.live = self.live, name
            self._update_merge_target()
            if unload_previous and old is not None and old != name:
                self._unload_pending.add(old)
                self._unload_unused()
            return time.perf_counter() - t0

        spent += self.call(switch)
        self.stats.swaps.append(spent)
        log.info("live adapter is now %s (engine paused %.1f ms)", name or "the base model", spent * 1000)
        return spent

    def unload(self, name: str) -> None:
        """Unload now if unused, else as soon as its last request finishes. The live adapter stays."""

        def mark() -> None:
            self._unload_pending.add(name)
            self._unload_unused()

        self.call(mark)

    def adapters(self) -> list[str]:
        return list(self.backend.adapters()) if self._ready.is_set() and not self._load_error else []

    def score(self, ids: list[int], last: int, adapter: str | None, scale: float | None, top: int) -> list:
        """Log-probabilities of the `last` ids given what precedes each (one forward pass on the engine thread),
        with the `top` most likely alternatives at each position: [(logprob, [(id, logprob)...])...]. For
        `logprobs`; `last` is at most len(ids) - 1."""
        if not self.caps.score:
            raise RequestError(
                f"logprobs are not available on the {self.backend.name} backend",
                param="logprobs",
                code="unsupported_parameter",
            )
        return self.call(lambda: self.backend.score(ids, last, adapter, scale, top))

    # ---- tokenizer access from other threads ----------------------------------------------------
    def encode(self, text: str) -> list[int]:
        with self._tok_lock:
            return self.backend.encode(text)

    def decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self.backend.decode(ids)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text)) if text else 0

    @property
    def context_length(self) -> int:
        return self.backend.context_length

    def chat_prompt(self, messages: list[dict]) -> str:
        """Messages -> prompt text through the model's chat template (ChatML when it has none)."""
        from penwright.trainer.prompt_format import chat_prompt

        with self._tok_lock:
            return chat_prompt(self.backend.tokenizer, messages)

    def status(self) -> dict:
        info = self.backend.info() if self.running else {"backend": self.backend.name}
        return {
            **info,
            "live_adapter": self.live,
            "loaded_adapters": self.adapters(),
            "queue_depth": self._queue.qsize() + len(self._waiting),
            "active": len(self._active),
            "max_batch": self.max_batch,
            "batches": [len(b.seqs) for b in self._batches],
            "prefilling": len(self._prefilling),
            "served": self.stats.served,
            "failed": self.stats.failed,
            "cancelled": self.stats.cancelled,
            "running": self.running,
        }

    # ---- the engine thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.backend.load()
            from penwright.trainer.prompt_format import fim_style

            self.fim_style = fim_style(self.backend.vocab())
            gpu = str(self.backend.info().get("device", "")).startswith("cuda")
            if self.prefill_tokens is None:
                self.prefill_tokens = 8192 if gpu else 2048
            if self.prefill_chunk is None:
                self.prefill_chunk = 2048 if gpu else 512
        except BaseException as err:  # reported to start()'s caller
            self._load_error = err
            self._ready.set()
            return
        self._ready.set()
        with self.backend.thread_context():
            while not self._stopping:
                idle = not self._active and not self._waiting and self._queue.empty()
                if idle and self._warming:  # compile/capture between requests: the eager path serves meanwhile
                    self._warm_one()
                    continue
                self._drain(block=not self._active and not self._waiting)
                room = min(self.max_active - len(self._active), len(self._waiting))
                if room > 0:
                    self._admit_all([self._waiting.popleft() for _ in range(room)])
                if self._prefilling and self._since_piece >= len(self._batches):
                    self._since_piece = 0
                    self._prefill_piece(self._prefilling[0])
                if self._batches:
                    self._since_piece += 1
                    self._step_batch(self._batches[next(self._turn) % len(self._batches)])
                elif self._active and self.max_batch == 1:
                    self._advance(self._active[next(self._turn) % len(self._active)])
        self._shutdown()

    def _drain(self, block: bool) -> None:
        try:
            item = self._queue.get(timeout=0.5) if block else self._queue.get_nowait()
        except queue.Empty:
            return
        fresh: list = []
        while item is not None:
            kind, a, b = item
            if kind == "call":
                self._admit_all(fresh)  # requests queued before a call (e.g. a hot-swap) start before it
                fresh = []
                self._run_call(a, b)
            elif len(self._active) + len(fresh) < self.max_active and not self._waiting:
                fresh.append((a, b))
            else:
                self._waiting.append((a, b))
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        self._admit_all(fresh)

    def _warm_one(self) -> None:
        try:
            self._warming = bool(self.backend.warm_up())
        except Exception as err:  # warm-up is an optimisation: the engine serves without it
            log.warning("engine warm-up failed: %s", err)
            self._warming = False

    def warm_up(self, timeout: float | None = 600.0) -> float:
        """Finish the backend's warm-up now (on the engine thread) instead of between requests; returns seconds.
        For benchmarks and tests; the daemon lets it run in the background."""

        def run() -> float:
            t0 = time.perf_counter()
            while self._warming:
                self._warm_one()
            return time.perf_counter() - t0

        return self.call(run, timeout)

    def generate(self, requests: list[GenerationRequest], timeout: float | None = None) -> list:
        """Run `requests` together (prefilled and decoded in shared batches) and wait for all of them.
        Returns, in order, (text, Finished) for each, or the exception that request failed with. For
        callers that want whole texts (the promotion gate, `penwright eval`), not streams."""
        channels = [self.submit(r) for r in requests]
        out: list = []
        for channel in channels:
            try:
                out.append(channel.text(timeout))
            except Exception as err:  # that request only
                out.append(err)
        return out

    @staticmethod
    def _run_call(fn, fut: Future) -> None:
        try:
            fut.set_result(fn())
        except BaseException as err:
            fut.set_exception(err)

    def _admit_all(self, items: list) -> None:
        """Start requests, then prefill them now: time to first token is what inline completion feels."""
        fresh = [s for s in (self._admit(req, channel) for req, channel in items) if s is not None]
        if self.max_batch == 1:
            for seq, _ids in fresh:
                self._advance(seq)
            return
        pieces = self.caps.chunked_prefill and bool(self._batches)  # others decode: they must not wait a whole pass
        whole = []
        for seq, ids in fresh:
            if pieces and len(ids) > self.prefill_chunk:
                self._start_pieces(seq, ids)
            else:
                whole.append((seq, ids))
        for chunk in prefill_chunks(whole, self.max_batch, self.prefill_tokens):
            self._prefill(chunk)

    def _admit(self, req: GenerationRequest, channel: Channel) -> tuple[Seq, list[int]] | None:
        if channel.cancelled.is_set():
            self.stats.cancelled += 1
            channel.put(Finished("cancelled", 0, 0, None))
            return None
        try:
            adapter = self._resolve(req.adapter)
            ids, dropped = self._fit(req)
            it = self.backend.open(ids, adapter, req.adapter_scale, req.sampling) if self.max_batch == 1 else None
        except Exception as err:
            self.stats.failed += 1
            channel.put(err if isinstance(err, ServeError) else ServeError(f"generation failed: {err}"))
            return None
        stream = TextStream(self.backend.decode, req.sampling.stop, req.stop_check)
        seq = Seq(req, channel, adapter, len(ids), stream, it)
        self._in_use[adapter] = self._in_use.get(adapter, 0) + 1
        if adapter is not None:
            self._last_used[adapter] = time.monotonic()
        channel.put(Started(adapter, len(ids), dropped))
        self._active.append(seq)
        self._update_merge_target()
        return seq, ids

    def _resolve(self, wanted: str) -> str | None:
        if wanted == LIVE:
            return self.live
        if wanted == BASE:
            return None
        if wanted not in self.backend.adapters():
            raise RequestError(
                f"adapter '{wanted}' is not loaded",
                "Load it first (Engine.load_adapter).",
                param="model",
                code="model_not_found",
                status=404,
            )
        return wanted

    def _fit(self, req: GenerationRequest) -> tuple[list[int], int]:
        ids = self.encode(req.prompt) if isinstance(req.prompt, str) else list(req.prompt)
        ctx, want = self.backend.context_length, req.sampling.max_tokens
        if want < 1 or want >= ctx:
            raise RequestError(
                f"max_tokens must be between 1 and {ctx - 1} (the context is {ctx} tokens); got {want}",
                param="max_tokens",
                code="invalid_value",
            )
        if not ids:
            ids = sorted(self.backend.eos_ids)[:1] or [0]  # an empty prompt starts from end-of-text
        over = len(ids) + want - ctx
        if over > 0:
            if req.truncate == "error":
                raise RequestError(
                    f"the prompt is {len(ids)} tokens; with max_tokens={want} that exceeds the "
                    f"{ctx}-token context by {over}",
                    "Shorten the prompt or lower max_tokens.",
                    param="prompt",
                    code="context_length_exceeded",
                )
            ids = ids[over:]
        return ids, max(over, 0)

    def _advance(self, seq: Seq) -> None:
        """One-at-a-time: the next token of one sequence (the first `next()` is its prefill)."""
        if seq.channel.cancelled.is_set():
            self.stats.cancelled += 1
            return self._finish(seq, "cancelled")
        try:
            tok = next(seq.it)
        except Exception as err:
            self._failed(seq, err)
            return
        self._take(seq, tok)

    def _prefill(self, chunk: list[tuple[Seq, list[int]]]) -> None:
        """Batched: prefill requests of one adapter selection together, send each first token, then each joins
        a batch of that selection."""
        seqs = [seq for seq, _ids in chunk]
        try:
            rows = self.backend.prefill(
                [ids for _seq, ids in chunk], [s.req.sampling for s in seqs], seqs[0].adapter, seqs[0].req.adapter_scale
            )
        except Exception as err:  # the forward pass failed: every request in it fails
            for seq in seqs:
                self._failed(seq, err)
            return
        for seq, row in zip(seqs, rows):
            if isinstance(row, BaseException):
                self._failed(seq, row)
            elif self._take(seq, row.last):
                seq.row = row
                self._join(seq)

    def _start_pieces(self, seq: Seq, ids: list[int]) -> None:
        """Chunked prefill: the row starts with nothing cached; the engine loop runs one piece per round."""
        try:
            seq.row = self.backend.start_prefill(ids, seq.req.sampling)
        except Exception as err:
            self._failed(seq, err)
            return
        self._prefilling.append(seq)

    def _prefill_piece(self, seq: Seq) -> None:
        """The next piece of `seq`'s prompt, with the adapter it was admitted with (kept loaded by `_in_use`, as for
        any running request); the whole rest when nothing else decodes. After the last piece its first token is
        sent and it joins a batch, as after `_prefill`. A cancel or a failure ends this request only."""
        if seq.channel.cancelled.is_set():
            self.stats.cancelled += 1
            return self._finish(seq, "cancelled")
        tokens = self.prefill_chunk if self._batches else self.backend.context_length
        try:
            done = self.backend.prefill_piece(seq.row, tokens, seq.adapter, seq.req.adapter_scale)
        except Exception as err:
            return self._failed(seq, err)
        if done:
            self._prefilling.remove(seq)
            if self._take(seq, seq.row.last):
                self._join(seq)

    def _join(self, seq: Seq) -> None:
        fits = [
            b
            for b in self._batches
            if b.adapter == seq.adapter
            and b.scale == seq.req.adapter_scale
            and len(b.seqs) < self.max_batch
            and b.kv.accepts(seq.row)
        ]
        batch = next((b for b in fits if b.kv.pooled), fits[0] if fits else None)
        if batch is None or not batch.kv.pooled:  # a row that fits the free static pool goes there
            kv = self.backend.new_batch(seq.row)
            if batch is None or kv.pooled:
                batch = Batch(seq.adapter, seq.req.adapter_scale, kv)
                self._batches.append(batch)
        batch.seqs.append(seq)
        seq.batch = batch

    def _step_batch(self, batch: Batch) -> None:
        """One forward pass for every row of `batch`; cancelled rows leave it first."""
        for seq in [s for s in batch.seqs if s.channel.cancelled.is_set()]:
            self.stats.cancelled += 1
            self._finish(seq, "cancelled")
        if not batch.seqs:
            return
        seqs = list(batch.seqs)
        try:
            tokens = self.backend.step(batch.kv, [s.row for s in seqs], batch.adapter, batch.scale)
        except Exception as err:  # the forward pass failed: every row in it fails, other batches go on
            for seq in seqs:
                self._failed(seq, err)
            return
        for seq, tok in zip(seqs, tokens):
            if isinstance(tok, BaseException):  # this row's sampling failed: this row only
                self._failed(seq, tok)
            else:
                self._take(seq, tok)

    def _take(self, seq: Seq, tok: int) -> bool:
        """Send one generated token's text; finish the sequence on EOS, a stop or max_tokens. True if it goes on."""
        seq.generated += 1
        if tok in self.backend.eos_ids:
            self._finish(seq, "stop", flush=True)
            return False
        try:
            text, stopped = seq.stream.push(tok)
        except Exception as err:  # the request's own stop_check failed: that request only
            self._failed(seq, err)
            return False
        if text:
            seq.channel.put(Delta(text))
        if stopped:
            self._finish(seq, "stop")
        elif seq.generated >= seq.req.sampling.max_tokens:
            self._finish(seq, "length", flush=True)
        else:
            return True
        return False

    def _failed(self, seq: Seq, err: BaseException) -> None:
        log.error("generation failed", exc_info=err)
        self.stats.failed += 1
        self._finish(seq, None, ServeError(f"generation failed: {err}"))

    def _finish(self, seq: Seq, reason: str | None, error: BaseException | None = None, flush: bool = False) -> None:
        if seq.it is not None:
            seq.it.close()  # frees the KV cache
        if seq in self._prefilling:  # mid-prefill: its partial cache goes with its row
            self._prefilling.remove(seq)
            seq.row = None
        if seq.batch is not None:  # the batch drops its cache rows at its next step
            seq.batch.seqs.remove(seq)
            if not seq.batch.seqs:
                self._batches.remove(seq.batch)
                seq.batch.kv.close()  # a static batch gives its KV pool back
            seq.batch = None
        self._active.remove(seq)
        self._in_use[seq.adapter] -= 1
        if error is not None:
            seq.channel.put(error)
        else:
            if reason != "cancelled":
                tail = seq.stream.flush() if flush else ""  # text held back for a stop string that never came
                if tail:
                    seq.channel.put(Delta(tail))
                self.stats.served += 1
            seq.channel.put(Finished(reason, seq.prompt_tokens, seq.generated, seq.adapter, seq.stream.token_ids))
        if self._unload_pending:
            self._unload_unused()
        self._update_merge_target()

    def _update_merge_target(self) -> None:
        """Backends that can fold the live adapter into the weights do so only while every running request uses it
        (flipping merged/unmerged every step would cost more than it saves and add rounding noise)."""
        if self.caps.merge_live:
            mixed = any(seq.adapter != self.live for seq in self._active)
            self.backend.merge_target = None if mixed else self.live

    def _load(self, name: str, path: Path, scale: float, prepared=None) -> float:
        t0 = time.perf_counter()
        if name not in self.backend.adapters():
            self._evict_for_room()
            if prepared is not None:
                self.backend.add_adapter(name, path, scale, prepared=prepared)
            else:
                self.backend.add_adapter(name, path, scale)
        self._unload_pending.discard(name)
        self._last_used[name] = time.monotonic()
        return time.perf_counter() - t0

    def _evict_for_room(self) -> None:
        loaded = self.backend.adapters()
        spare = [a for a in loaded if a != self.live and not self._in_use.get(a)]
        spare.sort(key=lambda a: self._last_used.get(a, 0.0))
        while len(loaded) >= self.max_loaded_adapters and spare:
            victim = spare.pop(0)
            self.backend.remove_adapter(victim)
            loaded.remove(victim)

    def _unload_unused(self) -> None:
        for name in list(self._unload_pending):
            if name == self.live:
                self._unload_pending.discard(name)
            elif not self._in_use.get(name):
                self.backend.remove_adapter(name)
                self._unload_pending.discard(name)

    def _shutdown(self) -> None:
        gone = ServeError("the engine stopped", "The daemon is shutting down; retry when it is back.")
        for seq in list(self._active):
            self._finish(seq, None, gone)
        for _req, channel in self._waiting:
            channel.put(gone)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item and item[0] == "request":
                item[2].put(gone)
            elif item:
                item[2].set_exception(gone)


def check_adapter_name(name: str) -> None:
    if not ADAPTER_NAME.match(name or "") or name in "lora_":  # PEFT confuses names inside its "lora_" prefix
        raise RequestError(
            f"invalid adapter name {name!r}: use letters, digits, '-' and '_' only", param="model", code="invalid_value"
        )
