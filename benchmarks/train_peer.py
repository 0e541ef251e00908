"""The packed peer of `train_throughput.py`: TRL's SFTTrainer as a 2026 LoRA user runs it.

`packing=True` with the best-fit-decreasing strategy and `padding_free=True`: each micro-batch is ONE row of
real tokens with per-sample `position_ids` and `cu_seq_lens` (TRL's own collator), loss through TRL's fused
LM head on the labelled positions only (no full-vocabulary logits), the same LoRA (r16, alpha 32, dropout
0.05, seven projections) through `peft_config`, fused AdamW, gradient checkpointing as asked. Attention:
- `varlen`: FlashAttention's varlen kernel as built into torch (`torch.nn.attention.varlen`), registered with
  transformers the way `flash_attention_2` is: what a TRL user with FlashAttention installed gets (the
  flash-attn package itself is not on the device and its wheel is larger than a device call carries);
- `flex` / `sdpa`: transformers' own kernels, which build the block-diagonal mask from the position ids.
`liger`: TRL's `use_liger_kernel=True` (Liger's RMSNorm, SwiGLU and RoPE kernels; TRL keeps its own fused head).

Timing: wall clock from the end of the last warm-up step to the end of the last timed step, synchronised,
so data loading and collation count, as they do for ours. Tokens are the collated rows' tokens.
"""

from __future__ import annotations

import tempfile
import time


def dataset(data):
    """Our samples as a pre-tokenised dataset: input_ids and unshifted labels (TRL shifts them itself)."""
    from datasets import Dataset

    from penwright.trainer.data import IGNORE

    return Dataset.from_dict(
        {"input_ids": [s.input_ids for s in data], "labels": [[IGNORE] + s.labels[:-1] for s in data]}
    )


def load_model(path: str, attention: str, quantization: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if attention == "varlen":
        from penwright.trainer.backends.varlen import register

        attention = register()
    kwargs = {"dtype": torch.bfloat16 if device == "cuda" else torch.float32, "attn_implementation": attention}
    if quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def config(out_dir: str, job: dict, device: str):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=out_dir,
        max_steps=job["warmup"] + job["steps"],
        per_device_train_batch_size=job["rows"],
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
        gradient_checkpointing=job["ckpt"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
        packing=True,
        packing_strategy="bfd",
        padding_free=True,
        max_length=job["width"],
        use_liger_kernel=job.get("liger", False),
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )


def run_trl(path: str, data, job: dict, device: str) -> dict:
    """One TRL training run of warmup + steps optimizer steps; throughput over the timed steps."""
    import torch
    from train_throughput_loops import lora_config, peak_bytes, resident, sync
    from transformers import TrainerCallback
    from trl import SFTTrainer

    marks, tokens, losses, held = [], [], [], {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            held["bytes"] = resident(device)

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            marks.append(time.perf_counter())

    class Counted(SFTTrainer):
        def training_step(self, model, inputs, *args, **kwargs):
            tokens.append(int(inputs["input_ids"].numel()))
            loss = super().training_step(model, inputs, *args, **kwargs)
            losses.append(loss.detach())
            return loss

    model = load_model(path, job["attention"], job.get("quantization", "none"), device)
    with tempfile.TemporaryDirectory(prefix="penwright-trl-") as out:
        trainer = Counted(
            model=model,
            args=config(out, job, device),
            train_dataset=dataset(data),
            peft_config=lora_config(),
            callbacks=[Clock()],
        )
        trainer.train()
    w = job["warmup"]
    seconds = marks[-1] - marks[w - 1]
    timed = sum(tokens[w:])
    return {
        "tokens_per_s": timed / seconds,
        "peak_bytes": peak_bytes(device),
        "held_bytes": held.get("bytes", 0),
        "seconds": seconds,
        "tokens": timed,
        "last_loss": float(losses[-1]),
        "padding_share": 0.0,
        "rows": job["rows"],
        "width": job["width"],
        "mean_row_tokens": sum(tokens) / len(tokens) / job["rows"],
    }
