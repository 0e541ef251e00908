"""Torch backend: transformers + peft LoRA/DoRA/rsLoRA on CUDA (bf16, 4/8-bit bases) or the CPU.

The model is called through its decoder only; the LM head is applied to the target
positions in chunks (`penwright.trainer.losses`), so full-vocabulary logits are
never materialised. The KL teacher is the same model with the adapter disabled.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from penwright.errors import ModelNotFoundError, TrainingError
from penwright.trainer.backends import quantization_available
from penwright.trainer.backends.checkpointing import GC_KWARGS, set_checkpointing
from penwright.trainer.backends.levers import Levers, levers_for
from penwright.trainer.settings import ModelSettings, TrainingSettings

log = logging.getLogger(__name__)

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def linear_leaf_names(model) -> list[str]:
    """Names of the linear layers inside the transformer blocks (for targets: auto), lm_head excluded."""
    import torch

    kinds = (torch.nn.Linear,)
    try:
        import bitsandbytes as bnb  # noqa: F401  (only present on CUDA installs)

        kinds = kinds + (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except Exception:  # noqa: BLE001 - bitsandbytes may be missing or fail to load its library
        pass
    names = {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, kinds) and ".layers." in f".{name}" and "lm_head" not in name
    }
    return sorted(names)


def target_modules(model, targets: str) -> list[str]:
    present = set(linear_leaf_names(model))
    if targets == "auto":
        if not present:
            raise TrainingError("No linear layers found in the model's blocks.", "This architecture is not supported.")
        return sorted(present)
    wanted = ATTN if targets == "attn" else ATTN + MLP
    found = [n for n in wanted if n in present]
    if not found:
        raise TrainingError(
            f"This model has none of {wanted} (its layers: {sorted(present)}).",
            "Set training overrides {targets: auto}.",
        )
    return found


def cpu_bf16_supported() -> bool:
    """The CPU has native bf16 matmuls (AVX512-BF16 or AMX): autocast to bf16 is then ~2.5x faster there."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(settings: TrainingSettings, device: str) -> str:
    """bf16 where the device computes it natively (CUDA; CPUs with AVX512-BF16/AMX, under autocast with fp32
    weights and adapter), else fp32 on the CPU and fp16 on older GPUs."""
    import torch

    if settings.precision != "auto":
        if device == "cpu" and settings.precision == "fp16":
            return "fp32"
        return settings.precision
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if device == "cpu":
        return "bf16" if cpu_bf16_supported() else "fp32"
    return "fp16"


class TorchBackend:
    """Holds one model with its adapter; the training loop in `penwright.trainer.train` drives it."""

    name = "torch"

    def __init__(
        self,
        base_model: str,
        settings: TrainingSettings,
        model_settings: ModelSettings,
        device: str,
        levers: Levers | None = None,
    ):
        self.base_model, self.settings, self.model_settings, self.device = base_model, settings, model_settings, device
        self.layers = {"full": [], "elementwise": []}  # which decoder layers recompute (set_checkpointing)
        self.precision = resolve_precision(settings, device)
        quant = settings.quantization if settings.quantization != "model" else model_settings.quantization
        if quant != "none" and not quantization_available(quant):
            raise TrainingError(
                f"{quant} base loading needs a CUDA GPU with bitsandbytes; none here.",
                "Set model.quantization: none (and training quantization: model), or train on a GPU.",
            )
        self.quant = quant
        self.levers = levers_for(device, levers, quantized=quant != "none")  # CUDA speed levers; none on the CPU
        self.attention = self._attention(settings, device)
        self.model = self.tokenizer = None

    @staticmethod
    def _attention(settings: TrainingSettings, device: str) -> str:
        from penwright.trainer.backends.varlen import cuda_varlen_available

        if not settings.packing:
            return "sdpa"
        if settings.attention == "auto":  # each device's fastest, measured (benchmarks/cpu_train_speed.py on the CPU)
            if device == "cuda":
                return "varlen" if cuda_varlen_available() else "sdpa"
            return "causal" if device == "cpu" else "sdpa"
        return settings.attention

    # -- loading ---------------------------------------------------------------------------------------------------

    def load(self, init_adapter: Path | None = None) -> TorchBackend:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.base_model)
        if not (path / "config.json").is_file() and (path.is_absolute() or str(self.base_model).startswith(".")):
            raise ModelNotFoundError(self.base_model, "no config.json there")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.base_model)
        except OSError as err:
            raise ModelNotFoundError(self.base_model, str(err).splitlines()[0]) from None
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float32, "fp32": torch.float32}[self.precision]
        if self.device == "cpu":
            dtype = torch.float32  # the CPU's bf16 is autocast: the weights and the optimizer stay fp32
        from penwright.trainer.backends.varlen import register

        kwargs = {"dtype": dtype, "attn_implementation": register() if self.attention == "varlen" else "sdpa"}
        if self.quant != "none":
            kwargs["quantization_config"] = self._bnb_config()
        if self.device == "cuda":
            kwargs["device_map"] = {"": 0}  # straight onto the GPU, no full CPU copy first
        model = AutoModelForCausalLM.from_pretrained(self.base_model, **kwargs)
        if self.device != "cuda":
            model.to(self.device)
        model.config.use_cache = False
        self.model = self._wrap(model, init_adapter)
        return self

    def _bnb_config(self):
        import torch
        from transformers import BitsAndBytesConfig

        if self.quant == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16,
        )

    def _wrap(self, model, init_adapter: Path | None):
        from peft import LoraConfig, PeftModel, get_peft_model

        s = self.settings
        if self.quant != "none":
            model = self.prepare_kbit(model, s.checkpoint_fraction > 0 or s.recompute_elementwise)
        self.layers = set_checkpointing(model, s.checkpoint_fraction, s.recompute_elementwise, s.rank)
        if init_adapter is not None:  # warm start: continue training an earlier adapter
            wrapped = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        else:
            config = LoraConfig(
                r=s.rank,
                lora_alpha=s.alpha,
                lora_dropout=s.dropout,
                target_modules=target_modules(model, s.targets),
                use_dora=s.method == "dora",
                use_rslora=s.rslora,
                bias="none",
                task_type="CAUSAL_LM",
            )
            wrapped = get_peft_model(model, config)
        self._compile(model)  # after the adapter: its LoRA products are part of each compiled layer
        return wrapped

    def prepare_kbit(self, model, checkpointing: bool):
        """A 4/8-bit base made trainable: frozen weights and, when asked, checkpointing; with `Levers.kbit_fp32`
        through peft's k-bit preparation (the other weights cast to fp32), without it in their own dtype."""
        if self.levers.kbit_fp32:
            from peft import prepare_model_for_kbit_training

            return prepare_model_for_kbit_training(model, checkpointing, GC_KWARGS)
        for p in model.parameters():
            p.requires_grad_(False)
        if checkpointing:  # non-reentrant checkpointing needs no input that requires grad
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=GC_KWARGS)
        return model

    def _compile(self, model) -> None:
        """Each decoder layer compiled or eager, as the levers say (compilation is lazy: the first forward)."""
        from penwright.trainer.backends.levers import compile_decoder_layers, eager_decoder_layers

        if self.levers.compile_layers:
            compile_decoder_layers(model, skip=set(self.layers["elementwise"]))
        else:
            eager_decoder_layers(model)

    def set_checkpointing(self, fraction: float, elementwise: bool = False) -> dict[str, list[int]]:
        """Change what the loaded model's layers recompute (`penwright.trainer.backends.checkpointing`)."""
        self.layers = set_checkpointing(self.model.get_base_model(), fraction, elementwise, self.settings.rank)
        self._compile(self.model.get_base_model())
        return self.layers

    def set_levers(self, levers: Levers) -> Levers:
        """Change the speed levers of the loaded model (CUDA only; before its first step, or the compiled layers
        trace again)."""
        before = self.levers
        self.levers = levers_for(self.device, levers, quantized=self.quant != "none")
        if before.compile_layers and before.activation_budget != self.levers.activation_budget:
            import torch

            torch._dynamo.reset()  # the compiled layers' backward was partitioned under the old budget: trace again
        self._compile(self.model.get_base_model())
        return self.levers

    def plan_memory(
        self, budget_bytes: int, row_tokens: int, max_rows: int, allowed_rows: tuple[int, ...] | None = None
    ):
        """Rows per micro-batch and share of checkpointed layers that fit `budget_bytes` of memory, fastest
        first (`penwright.trainer.backends.memory_budget`); None if even one row with every layer
        checkpointed does not. Call after `load`, before the optimizer holds state."""
        from penwright.trainer.backends.memory_budget import plan

        return plan(
            self._budget_shape(), budget_bytes, self._static_bytes(), row_tokens, max_rows, allowed_rows=allowed_rows
        )

    def fit_memory(
        self,
        settings: TrainingSettings,
        budget_bytes: int | None = None,
        row_tokens: int | None = None,
        max_rows: int = 16,
    ) -> TrainingSettings:
        """Before the optimizer exists: the settings whose rows per micro-batch and checkpointing are the memory
        budget's plan for `budget_bytes`, the layers set to that checkpointing. The rows of an optimizer step
        (batch_size x grad_accumulation) stay as asked: a micro-batch takes a divisor of them (at most `max_rows`)
        and accumulation the rest, so the plan changes speed and memory, not the optimisation. `budget_bytes`
        defaults on CUDA to what is allocated now plus 92% of what the device has free; elsewhere there is no
        default (no plan). `row_tokens`: the longest row's tokens (default: 90% of the row width, a packed row).
        Unchanged settings where nothing fits: the OOM ladder still stands behind."""
        from penwright.trainer.backends.memory_budget import divisors, settings_for

        if budget_bytes is None:
            if self.device != "cuda":
                return settings
            import torch

            budget_bytes = torch.cuda.memory_allocated() + int(0.92 * torch.cuda.mem_get_info()[0])
        width = settings.max_seq_length or self.model_settings.max_context_tokens
        per_step = settings.batch_size * settings.grad_accumulation
        tokens = row_tokens or int(0.9 * width)
        chosen = self.plan_memory(budget_bytes, tokens, min(max_rows, per_step), divisors(per_step))
        if chosen is None:
            log.info("memory budget %.2f GiB: nothing fits, training as set", budget_bytes / 2**30)
            return settings
        log.info("memory budget %.2f GiB: %s", budget_bytes / 2**30, chosen.describe())
        self.settings = settings_for(settings, chosen)
        self.set_checkpointing(chosen.fraction)
        if chosen.keep != self.levers.activation_budget:
            self.set_levers(replace(self.levers, activation_budget=chosen.keep))
        return self.settings

    def predicted_peak(self, tokens: int, fraction: float) -> int:
        """The memory budget's prediction of a step's peak GPU memory (to check it against the measured one), with
        what the levers' compiled layers keep for backward."""
        from penwright.trainer.backends.memory_budget import predict_peak

        shape = self._budget_shape()
        keep = self.levers.activation_budget if shape.compiled else 1.0
        return predict_peak(shape, self._static_bytes(), tokens, fraction, keep)

    def _budget_shape(self):
        from penwright.trainer.backends.memory_budget import Shape

        c = self.model.get_base_model().config
        chunk = 0 if self.levers.fused_loss else self.settings.loss_chunk_tokens
        return Shape(
            hidden=c.hidden_size,
            layers=c.num_hidden_layers,
            vocab=c.vocab_size,
            dropout=self.settings.dropout,
            loss_chunk=chunk,
            compiled=self.levers.compile_layers,
            device="cpu" if self.device == "cpu" else "cuda",
            activation_bytes=self._activation_bytes(),
        )

    def _activation_bytes(self) -> int:
        """Bytes per activation element for the memory budget. CPU: fp32, or under bf16 autocast bf16 matmul outputs
        beside an fp32 residual stream (3); a 4/8-bit base: peft's k-bit preparation casts the norms and embeddings
        to fp32, so the residual stream is fp32 too (3: on the H200 a 7B nf4 step held 1.35x the bf16 prediction);
        else 2 (bf16)."""
        if self.device == "cpu":
            return 3 if self.precision == "bf16" else 4
        return 3 if self.quant != "none" and self.levers.kbit_fp32 else 2

    def _static_bytes(self) -> int:
        """The weights (on CUDA all that is allocated) plus the adapter's gradients and AdamW's two moments."""
        adapter = sum(p.numel() * p.element_size() for p in self.trainable_parameters())
        if self.device == "cuda":
            import torch

            return torch.cuda.memory_allocated() + 3 * adapter
        weights = sum(t.numel() * t.element_size() for t in (*self.model.parameters(), *self.model.buffers()))
        return weights + 3 * adapter

    def _parts(self):
        causal = self.model.get_base_model()
        return causal.get_decoder(), causal.get_output_embeddings()

    def autocast(self):
        import torch

        if self.device == "cuda" and self.precision in ("bf16", "fp16"):
            return torch.autocast("cuda", dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
        if self.device == "cpu" and self.precision == "bf16":  # fp32 weights and adapter, bf16 matmuls
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def collate(self, rows) -> dict:
        """Rows -> one micro-batch: one padding-free row (varlen), or padded rows (sdpa)."""
        from penwright.trainer.backends.varlen import collate_varlen
        from penwright.trainer.data import collate

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if self.attention == "varlen":
            return collate_varlen(rows, pad)
        return collate(rows, pad, self.settings.packing, causal=self.attention == "causal")

    def _hidden(self, decoder, batch: dict):
        """The decoder's last hidden states; if compiling the layers fails (no C compiler for Triton, an
        unsupported op), the layers go back to eager once, with a warning, and training goes on."""
        from penwright.trainer.backends.levers import eager_decoder_layers, is_compile_error

        try:
            return self._decoder_forward(decoder, batch)
        except Exception as err:
            if not (self.levers.compile_layers and is_compile_error(err)):
                raise
            log.warning("compiling the decoder layers failed, training on without: %s", str(err).splitlines()[0])
            self.levers = replace(self.levers, compile_layers=False)
            eager_decoder_layers(self.model.get_base_model())
            return self._decoder_forward(decoder, batch)

    def _decoder_forward(self, decoder, batch: dict):
        from penwright.trainer.backends.levers import partitioner_budget

        extra = {k: batch[k] for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k") if k in batch}
        with partitioner_budget(self.levers):  # compiled layers are traced in here: what their backward keeps
            out = decoder(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                attention_mask=batch.get("attention_mask"),
                use_cache=False,
                **extra,
            )
        return out.last_hidden_state  # (B, T, H)

    def loss_sums(self, batch: dict, kl: bool = True) -> tuple:
        """(CE sum, KL sum or None, number of target tokens) of one micro-batch on the device."""
        from penwright.trainer.losses import chunked_kl_sum, select_targets

        batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
        decoder, head = self._parts()
        with self.autocast():
            hidden = self._hidden(decoder, batch)
            h, y, keep = select_targets(hidden, batch["labels"])
            ce = self._ce_sum(h, y, head)
            kl_sum = None
            if kl and self.settings.kl_lambda > 0:
                import torch

                with torch.no_grad(), self.model.disable_adapter():  # teacher = the base, same weights
                    t_hidden = self._hidden(decoder, batch)
                t_h = t_hidden.reshape(-1, t_hidden.shape[-1]).index_select(0, keep)
                kl_sum = chunked_kl_sum(h, t_h, head, self.settings.loss_chunk_tokens, self.settings.kl_tau)
        return ce, kl_sum, int(y.numel())

    def _ce_sum(self, h, y, head):
        """Summed cross-entropy of (N, H) target states: Liger's fused kernel where that lever is on, else chunked."""
        if self.levers.fused_loss:
            from penwright.trainer.backends.levers import fused_ce_sum

            return fused_ce_sum(h, y, head)
        from penwright.trainer.losses import chunked_ce_sum

        return chunked_ce_sum(h, y, head, self.settings.loss_chunk_tokens)

    def evaluate(self, batches: list[dict]) -> float | None:
        """Mean target-token cross-entropy over the batches (no dropout, no KL)."""
        import torch

        if not batches:
            return None
        self.model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for b in batches:
                ce, _, count = self.loss_sums(b, kl=False)
                total, n = total + float(ce), n + count
        self.model.train()
        return total / max(n, 1)

    # -- adapter files -------------------------------------------------------------------------------------------

    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def save(self, folder: Path) -> Path:
        """A standard PEFT adapter folder (adapter_config.json + adapter_model.safetensors)."""
        self.model.save_pretrained(str(folder))
        return folder

    def load_adapter_weights(self, folder: Path) -> None:
        from peft import load_peft_weights, set_peft_model_state_dict

        weights = load_peft_weights(str(folder), device=self.device if self.quant == "none" else "cuda")
        set_peft_model_state_dict(self.model, weights)

    def peak_memory_bytes(self) -> int:
        import torch

        if self.device == "cuda":
            return int(torch.cuda.max_memory_allocated())
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak RSS: KiB on Linux, bytes on macOS
        return int(peak if sys.platform == "darwin" else peak * 1024)
