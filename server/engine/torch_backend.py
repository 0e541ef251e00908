"""transformers + PEFT backend: CUDA (optionally 4-bit) or CPU. Runs only on the engine thread.

Several LoRA adapters live side by side in one PeftModel; each decode step first
activates the adapter (and scale) of the sequences it advances, so sequences
with different adapters can be interleaved step by step without mixing.
`open()` generates one sequence (the engine's max_batch 1); `prefill()` + `step()`
prefill and decode the sequences of one adapter selection together (torch_batch.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from penwright.errors import ModelNotFoundError, ServeError
from penwright.server.engine.sampling import apply_penalties, choose, make_generator
from penwright.server.engine.text import HFTokenizerText
from penwright.server.engine.torch_batch import batchable, output_cache
from penwright.server.engine.types import SamplingParams

log = logging.getLogger(__name__)


class TorchBackend(HFTokenizerText):
    name = "torch"
    capabilities = frozenset(  # contracts.py
        {"batched_decoding", "chunked_prefill", "warm_up", "share_cpu", "score", "merge_live"}
    )

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        dtype: str = "auto",
        quantization: str = "none",
        max_context_tokens: int | None = None,
        merge_live: bool | str = "auto",
        preloaded=None,
        static_decode: bool | str = "auto",
        static_tokens: int = 4096,
        static_slots: int = 8,
        static_compile: bool = False,
        static_lookahead: bool | str = "auto",
        adapter_spares: int | str = "auto",
    ):
        """`merge_live`: fold the live adapter into the base weights while only it is in use (about 2x faster
        decoding than unmerged LoRA; switching to another adapter unmerges first). "auto" = on CUDA without
        quantization. `preloaded=(model, tokenizer)` serves an already built model (benchmarks, embedding).
        `static_decode`: batched decoding over a preallocated KV pool of `static_slots` rows x `static_tokens`
        columns (static_decode.py), replayed as CUDA graphs on CUDA; "auto" = on CUDA without quantization.
        Rows that do not fit, and everything until the warm-up has checked it, decode on the dynamic path.
        `static_compile`: torch.compile the static step before capturing it (a longer warm-up, fewer kernels).
        `static_lookahead`: greedy rows launch their next step before this one's tokens are read; "auto" = with
        CUDA graphs. `adapter_spares`: spare LoRA slots injected beside the first adapter of a shape, so that
        promotions copy tensors instead of injecting modules (peft_slots.py); "auto" = 4 on CUDA where the live
        adapter is merged, else 0."""
        self.model_path = model_path
        self.merge_live = merge_live
        self.static_decode = static_decode
        self._static_shape = (static_slots, static_tokens, static_compile, static_lookahead)
        self.static = None  # the StaticDecoder, once loaded with static decoding on
        self.cache_kw = "past_key_values"
        self.merge_target: str | None = None  # set by the engine: the live adapter, when all running requests use it
        self._preloaded = preloaded
        self._device_pref, self._dtype_pref, self.quantization = device, dtype, quantization
        self._max_context = max_context_tokens
        self.model = None
        self.tokenizer = None
        self._cpu_threads: int | None = None  # the engine thread's own intra-op threads, before share_cpu
        from penwright.server.engine.peft_slots import LoraSlots

        self._slots = LoraSlots(self)
        self._spares = adapter_spares
        self._prefill_warmed = False

    # ---- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._preloaded is not None:
            return self._adopt(*self._preloaded)
        self.device = self._pick_device(torch)
        dtype = self._pick_dtype(torch)
        kwargs: dict = {"dtype": dtype}
        if self.quantization != "none":
            if self.device.type != "cuda":
                log.warning("quantization=%s needs CUDA; loading unquantized on %s", self.quantization, self.device)
            else:
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=self.quantization == "4bit",
                    load_in_8bit=self.quantization == "8bit",
                    bnb_4bit_compute_dtype=dtype,
                    bnb_4bit_quant_type="nf4",
                )
                kwargs["device_map"] = {"": self.device.index or 0}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, **kwargs)
        except OSError as err:
            raise ModelNotFoundError(self.model_path, str(err).splitlines()[0]) from None
        if "device_map" not in kwargs:
            model.to(self.device)
        self._adopt(model, self.tokenizer)

    def _adopt(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = next(model.parameters()).device
        if self.merge_live == "auto":
            self.merge_live = self.device.type == "cuda" and self.quantization == "none"
        auto = 4 if self.merge_live and self.device.type == "cuda" else 0
        self._slots.spares_ahead = auto if self._spares == "auto" else int(self._spares)
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        self.context_length = min(limit, self._max_context or limit)
        self.eos_ids = self._eos_ids()
        self._preloaded = None
        from penwright.server.engine.torch_batch import cache_kwarg

        self.cache_kw = cache_kwarg(model)
        if self.static_decode == "auto":
            self.static_decode = self.device.type == "cuda" and self.quantization == "none"
        if self.static_decode:
            from penwright.server.engine.static_decode import StaticDecoder

            slots, tokens, compile_step, lookahead = self._static_shape
            graphs = self.device.type == "cuda"
            self.static = StaticDecoder(
                self,
                slots,
                min(tokens, self.context_length),
                graphs=graphs,
                compile=compile_step,
                lookahead=None if lookahead == "auto" else bool(lookahead),
            )

    def share_cpu(self, busy_elsewhere: int) -> None:
        """On CPU, leave `busy_elsewhere` cores to another process (the training child): the engine's threads
        meet at a barrier after every op, so one thread that has to wait for a busy core stalls all of them
        (~10x slower completions while training on 2 cores). 0 gives the engine all its threads back.
        Call on the engine thread: torch's intra-op setting is per calling thread under OpenMP."""
        if self.device.type != "cpu":
            return
        import torch

        if self._cpu_threads is None:
            self._cpu_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self._cpu_threads - busy_elsewhere) if busy_elsewhere else self._cpu_threads)

    def _pick_device(self, torch):
        if self._device_pref in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda")
        if self._device_pref == "cuda":
            raise ServeError(
                "model.backend is cuda but no CUDA device is available.",
                "Install a CUDA build of torch, or set model.backend: auto.",
            )
        return torch.device("cpu")

    def _pick_dtype(self, torch):
        if self._dtype_pref != "auto":
            return getattr(torch, self._dtype_pref)
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def _eos_ids(self) -> set[int]:
        ids = set()
        for tok in (self.tokenizer.eos_token, "<|endoftext|>", "<|im_end|>", "<|file_sep|>"):
            tid = self.tokenizer.convert_tokens_to_ids(tok) if tok else None
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids

    def thread_context(self):
        import torch

        return torch.inference_mode()

    # ---- adapters ------------------------------------------------------------------------------
    def prepare_adapter(self, path: Path):
        """Read an adapter's config and weights onto the device. Thread-safe: runs outside the engine thread,
        so a hot-swap pauses generation only for `add_adapter`'s module injection."""
        from peft import PeftConfig
        from peft.utils import load_peft_weights

        if not (Path(path) / "adapter_config.json").is_file():
            raise ServeError(
                f"{path} is not a PEFT adapter folder (no adapter_config.json).",
                "Adapters are published by `penwright train`; check the registry with `penwright adapters`.",
            )
        if (Path(path) / "adapters.safetensors").is_file():
            raise ServeError(
                f"{path} is an mlx-lm adapter; this daemon serves with transformers + PEFT.",
                "Serve it on Apple Silicon (model.backend: mlx), or retrain with the torch backend.",
            )
        try:
            config = PeftConfig.from_pretrained(str(path))
        except (ValueError, TypeError, KeyError) as err:
            raise ServeError(f"{path}/adapter_config.json is not a PEFT config: {err}") from None
        config.inference_mode = True
        dtype = next(self.model.parameters()).dtype
        dtype = dtype if dtype.is_floating_point else None  # quantized bases keep the adapter's own dtype
        weights = load_peft_weights(str(path), device=str(self.device))
        return config, {k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in weights.items()}

    def add_adapter(self, name: str, path: Path, scale: float = 1.0, prepared=None) -> None:
        config, weights = prepared if prepared is not None else self.prepare_adapter(path)
        self._slots.add(name, Path(path), scale, config, weights)

    def remove_adapter(self, name: str) -> None:
        self._slots.remove(name)

    def adapters(self) -> list[str]:
        return list(self._slots.scales)

    def activate(self, adapter: str | None, scale: float | None) -> None:
        """Make the next forward pass use `adapter` (None: the base) at `scale` (engine thread)."""
        self._slots.activate(adapter, scale, self.merge_target, bool(self.merge_live))

    _activate = activate

    def graphable(self) -> bool:
        """Whether the forward pass now runs the plain module tree (what a captured graph replays): no adapters,
        the live adapter merged, or the base with adapters disabled and nothing merged. Call after activate()."""
        slots = self._slots
        return not slots.layers or slots.merged is not None or (slots.state is not None and slots.state[0] is None)

    def weight_changes(self) -> int:
        return self._slots.changes

    def forward(self, **kwargs):
        return self.model(**kwargs)

    # ---- generation ----------------------------------------------------------------------------
    def open(self, ids: list[int], adapter: str | None, scale: float | None, params: SamplingParams) -> Iterator[int]:
        """Token ids one at a time; the first `next()` runs the prefill. Close it to free the KV cache."""
        import torch

        prompt = torch.tensor([ids], dtype=torch.long, device=self.device)
        generator = make_generator(params.seed, self.device)
        self._activate(adapter, scale)
        out = self.model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        past, logits = output_cache(out), out.logits[0, -1]
        generated: list[int] = []
        while True:
            tok = choose(apply_penalties(logits.float(), params, prompt[0], generated), params, generator)
            generated.append(tok)
            yield tok
            self._activate(adapter, scale)
            step = torch.tensor([[tok]], dtype=torch.long, device=self.device)
            out = self.model(input_ids=step, use_cache=True, **{self.cache_kw: past})
            past, logits = output_cache(out), out.logits[0, -1]

    def score(self, ids: list[int], last: int, adapter: str | None, scale: float | None, top: int) -> list:
        """Engine.score: one forward pass over `ids`, logits kept only for the rows that predict the last ids."""
        import torch

        from penwright.server.engine.sampling import token_logprobs

        if last <= 0:
            return []
        self._activate(adapter, scale)
        inputs = torch.tensor([ids], dtype=torch.long, device=self.device)
        logits = self.model(input_ids=inputs, logits_to_keep=last + 1).logits[0, :-1]  # (last, V)
        return token_logprobs(logits, ids[-last:], top)

    # ---- batched generation (torch_batch.py) ---------------------------------------------------------
    def prefill(
        self, prompts: list[list[int]], params: list[SamplingParams], adapter: str | None, scale: float | None
    ) -> list:
        """Prefill prompts of one adapter selection in one forward pass and sample each first token (`row.last`).
        Returns a Row per prompt (to join a KVBatch), or the exception that row's sampling raised."""
        import torch

        from penwright.server.engine.torch_batch import Row

        longest = max(map(len, prompts))
        # (B, T), right-padded: causal attention keeps every real token's pass exactly as alone
        tokens = torch.tensor(
            [ids + ids[-1:] * (longest - len(ids)) for ids in prompts], dtype=torch.long, device=self.device
        )
        ends = torch.tensor([[len(ids) - 1] for ids in prompts], dtype=torch.long, device=self.device)
        self._activate(adapter, scale)
        with self._prefill_attention():
            out = self.model(input_ids=tokens, use_cache=True, logits_to_keep=1 if len(prompts) == 1 else ends)
        layers = batch_layers(out)
        rows: list = []
        for i, ids in enumerate(prompts):
            n = len(ids)
            kv = [(k[i : i + 1, :, :n], v[i : i + 1, :, :n]) for k, v in layers]
            row = Row(tokens[i, :n], params[i], make_generator(params[i].seed, self.device), kv, n)
            try:
                row.sample(out.logits[i, -1])
                rows.append(row)
            except Exception as err:  # this row's error only
                rows.append(err)
        return rows

    def start_prefill(self, ids: list[int], params: SamplingParams):
        """A Row with none of its prompt in its cache yet (length 0), for `prefill_piece` (chunked prefill)."""
        import torch

        from penwright.server.engine.torch_batch import Row

        prompt = torch.tensor(ids, dtype=torch.long, device=self.device)
        return Row(prompt, params, make_generator(params.seed, self.device), None, 0)

    def prefill_piece(self, row, tokens: int, adapter: str | None, scale: float | None) -> bool:
        """Run the next `tokens` prompt tokens of `row` on top of its cache (the model's own cache continuation:
        positions and the causal mask follow from the cached length). After the last piece, sample the first token
        (`row.last`) and return True: the row is then what `prefill` returns for this prompt alone. Sampling errors
        raise (this row's only)."""
        from penwright.server.engine.torch_batch import cache_of

        end = min(row.length + tokens, len(row.prompt))
        past = {} if row.kv is None else {self.cache_kw: cache_of(row.kv)}
        self._activate(adapter, scale)
        with self._prefill_attention():
            out = self.model(input_ids=row.prompt[None, row.length : end], use_cache=True, logits_to_keep=1, **past)
        row.kv, row.length = batch_layers(out), end  # (1, H, end, D) each
        if end < len(row.prompt):
            return False
        row.sample(out.logits[0, -1])
        return True

    def _prefill_attention(self):
        """On CUDA, prefill attention by the flash or memory-efficient kernels, not cuDNN's: on the H200 each new
        (rows, prompt length) shape of a prefill cost ~50 ms more the first time than after (0.5B: a 2 x 1,000-token
        pass 72 ms the first time, 24 ms later), as a per-shape plan build would, and prompt lengths rarely repeat.
        (Unmeasured whether cuDNN is the cause: the next device run shows it.)"""
        import contextlib

        if self.device.type != "cuda":
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])

    def new_batch(self, first=None):
        """A batch for rows of one adapter selection, starting with the row `first`: the static pool when it is
        warmed up, free and `first` fits in it; else a dynamic KVBatch."""
        from penwright.server.engine.torch_batch import KVBatch

        static = self.static
        if static is not None and static.ready and not static.busy and (first is None or static.fits(first)):
            from penwright.server.engine.static_decode import StaticBatch

            return StaticBatch(static)
        return KVBatch(self.device, self.forward, self.cache_kw)

    def step(self, batch, rows: list, adapter: str | None, scale: float | None) -> list:
        """One decode step for `rows` (all of one adapter selection) -> each row's next token, or the
        exception its sampling raised, in `rows` order. A failed forward pass raises (for the whole batch)."""
        batch.sync(rows)
        self._activate(adapter, scale)
        tokens = dict(zip(map(id, batch.rows), batch.decode(self.graphable())))
        return [tokens[id(row)] for row in rows]

    def warm_up(self) -> bool:
        """One unit of background warm-up (engine thread, between requests): check the static path, capture one
        CUDA graph per call, then one batched prefill as large as a GPU prefill pass. True while more remains."""
        if self.static is not None and self.static.warm_up_step():
            return True
        if self.device.type == "cuda" and not self._prefill_warmed:
            self._prefill_warmed = True
            self.warm_prefill()
        return False

    def warm_prefill(self, rows: int = 8, tokens: int = 1024) -> None:
        """A prefill of `rows` x `tokens` on the base (results dropped), so that the first burst of requests does not
        pay for growing the CUDA allocator's pool and first-use library set-up (seen: ~75 ms per pass on the H200
        for the first 2- and 6-prompt passes of a 0.5B model, ~25 ms later)."""
        ids = [(7 + i) % max(2, len(self.tokenizer)) for i in range(tokens)]
        self.prefill([ids] * rows, [SamplingParams(max_tokens=1)] * rows, None, None)
        self.prefill([ids] * 2, [SamplingParams(max_tokens=1)] * 2, None, None)

    def eager_greedy(self, ids: list[int], n: int) -> list[int]:
        """`n` greedy tokens of the current adapter selection on the dynamic path (the static path's reference)."""
        from penwright.server.engine.torch_batch import KVBatch

        (row,) = self.prefill([ids], [SamplingParams(max_tokens=n)], None, None)
        batch = KVBatch(self.device, self.forward, self.cache_kw)
        batch.sync([row])
        return [row.last] + [batch.decode()[0] for _ in range(n - 1)]

    def _static_info(self) -> dict | None:
        s = self.static
        if s is None:
            return None
        return {
            "ready": s.ready,
            "disabled": s.disabled,
            "graphs": len(s.graphs),
            "fused_step": s.fused is not None,
            "lookahead": s.lookahead,
            "slots": s.slots,
            "max_tokens": s.max_tokens,
            **s.stats,
        }

    def info(self) -> dict:
        import torch

        info = {
            "backend": self.name,
            "device": str(self.device),
            "model": self.model_path,
            "context_length": self.context_length,
            "quantization": self.quantization,
            "merged_adapter": self._slots.merged_adapter,
            "spare_adapter_slots": len(self._slots.spare),
            "static_decode": self._static_info(),
        }
        if self.device.type == "cuda":
            info["memory_bytes"] = torch.cuda.memory_allocated(self.device)
            info["memory_total_bytes"] = torch.cuda.get_device_properties(self.device).total_memory
        else:
            with contextlib.suppress(Exception):
                import psutil

                info["memory_bytes"] = psutil.Process().memory_info().rss
        return info


def batch_layers(out) -> list:
    """A prefill's per-layer (keys, values) for a KV batch; a clear error for a model whose cache cannot batch."""
    cache = output_cache(out)
    if not batchable(cache):
        raise ServeError("this model's KV cache cannot be batched", "Serve it with server.max_batch: 1.")
    return [(layer.keys, layer.values) for layer in cache.layers]
