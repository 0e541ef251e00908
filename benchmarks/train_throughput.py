"""Training throughput: the plain transformers + PEFT loop vs Penwright's trainer, in ONE process, on the same data.

    python benchmarks/train_throughput.py --shape 31m          # CPU here, the real 31M base
    python benchmarks/train_throughput.py --shape 0.5b --shape 7b --qlora   # on a CUDA GPU (random-init weights)
    python benchmarks/train_throughput.py --make-lengths        # rebuild benchmarks/chunk_lengths.json

Data is manuscript-shaped: sample lengths are drawn from `chunk_lengths.json`, the token lengths
of paragraph-aligned chunks of the Austen and Doyle corpora (target 600, max 1000 tokens of the
31M model's tokenizer), so padding waste counts. The first quarter of each sample is prompt
(masked, as in a continuation pair); both loops learn only the rest.

Baseline (../shared/docs/baselines.md): bf16 `get_peft_model` LoRA r16/alpha32/dropout 0.05 on the
seven projections, AdamW, SDPA, HF's loss over full logits, batches padded to their longest sample.
Ours: the same LoRA, through `TorchBackend.loss_sums` + `optimizer_step` (the code `run_training`
runs): best-fit packing into full rows with per-sample position ids, loss only on target positions
in chunks (no full-vocabulary fp32 logits), fused AdamW. Tokens/s counts real (non-pad) tokens.
MFU = 4 * N * tokens/s / peak (LoRA: forward plus activation gradients, no weight gradients), as
in baselines.md, with peak 790 TFLOP/s on an H200 (measured bf16 matmul rate).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LENGTHS = HERE / "chunk_lengths.json"
SHARED = HERE.parent.parent / "shared"
PEAK_FLOPS = {"cuda": 790e12, "cpu": None}

SHAPES = {  # Qwen2.5 dims (config.json of the published models); random-init weights
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, batch=8, checkpointing=False),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False, batch=4, checkpointing=True),
}


def make_lengths(target: int = 600, cap: int = 1000) -> list[int]:
    """Paragraph chunker over ../shared/corpora: whole paragraphs until `target` tokens, never over `cap`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHARED / "models" / "gutenberg-qwen2-31m")
    lengths = []
    for book in sorted((SHARED / "corpora").glob("*/*.txt")):
        paras = [" ".join(p.split()) for p in book.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        size = 0
        for n in (len(ids) for ids in tok(paras, add_special_tokens=False)["input_ids"]):
            if size and size + n > cap:
                lengths.append(size)
                size = 0
            size = min(size + n, cap)
            if size >= target:
                lengths.append(size)
                size = 0
    return lengths


def samples(n: int, vocab: int, seed: int = 0):
    """n manuscript-shaped samples of random tokens: (input_ids, shifted labels) with the first quarter masked."""
    from penwright.trainer.data import IGNORE, Sample

    lengths = json.loads(LENGTHS.read_text())["lengths"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.choice(lengths)
        ids = [rng.randrange(16, vocab) for _ in range(length)]
        prompt = length // 4
        targets = [IGNORE] * prompt + ids[prompt:]
        out.append(Sample(ids, targets[1:] + [IGNORE]))
    return out


def build_model(shape: str, device: str, folder: Path | None):
    """A random-init model of the shape (or the real 31M base); saved to `folder` when given (for 4-bit loading)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if shape == "31m":
        return str(SHARED / "models" / "gutenberg-qwen2-31m")
    dims = {k: v for k, v in SHAPES[shape].items() if k not in ("batch", "checkpointing")}
    config = Qwen2Config(**dims, max_position_embeddings=4096, rope_theta=1e6)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    _tokenizer_stub(folder, dims["vocab_size"])
    del model
    free()  # the random-init copy must not count in the loops' peak memory
    return str(folder)


def _tokenizer_stub(folder: Path, vocab: int) -> None:
    """A byte-level tokenizer file so AutoTokenizer loads (the data is already token ids)."""
    from penwright.trainer.tiny import train_tokenizer

    train_tokenizer(["manuscript shaped data " * 50], 300).save_pretrained(folder)


def free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_bytes(device: str) -> int:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def resident(device: str) -> int:
    """Bytes allocated before the timed steps (the model, and anything an earlier loop left behind)."""
    import torch

    return torch.cuda.memory_allocated() if device == "cuda" else 0


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def run_baseline(path: str, data, batch: int, checkpointing: bool, device: str, steps: int, warmup: int) -> dict:
    """The plain recipe: full-logit HF loss on padded batches."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from penwright.trainer.data import IGNORE

    free()
    leftover = resident(device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa",
                                                 device_map={"": 0} if device == "cuda" else None)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(model, lora_config())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    order = list(range(len(data)))
    random.Random(1).shuffle(order)
    batches = [[data[i] for i in order[k:k + batch]] for k in range(0, len(order) - batch + 1, batch)]

    def step(rows):
        width = max(len(s) for s in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, IGNORE)
        for i, s in enumerate(rows):
            ids[i, :len(s)] = torch.tensor(s.input_ids)
            mask[i, :len(s)] = 1
            unshifted = [IGNORE] + s.labels[:-1]  # HF shifts labels itself
            labels[i, :len(s)] = torch.tensor(unshifted)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return sum(len(s) for s in rows), float(out.loss.detach())

    result = _timed(step, batches, steps, warmup, device)
    timed = batches[warmup:warmup + steps]
    capacity = sum(len(b) * max(len(x) for x in b) for b in timed)
    result["pad_share"] = 1 - sum(len(x) for b in timed for x in b) / capacity
    result["leftover_bytes"] = leftover
    del model, opt
    return result


def run_ours(path: str, data, configs: list[tuple[int, int]], checkpointing: bool, device: str, steps: int,
             warmup: int, quantization: str = "none", attention: str = "auto") -> list[dict]:
    """Penwright's path: TorchBackend + packing + chunked target-only loss + optimizer_step, one model load,
    for each (rows per batch, row length) in `configs` (the freed logits memory buys bigger batches)."""
    from penwright.trainer import data as D
    from penwright.trainer.backends.torch_backend import TorchBackend
    from penwright.trainer.settings import ModelSettings, TrainingSettings
    from penwright.trainer.train import make_optimizer, optimizer_step

    free()
    leftover = resident(device)
    width = max(w for _, w in configs)
    s = TrainingSettings(rank=16, alpha=32, dropout=0.05, targets="attn_mlp", gradient_checkpointing=checkpointing,
                         quantization=quantization, max_seq_length=width, attention=attention)
    backend = TorchBackend(path, s, ModelSettings(max_context_tokens=width), device).load()
    opt = make_optimizer(backend.trainable_parameters(), s, device)
    results = []
    for rows_per_batch, max_len in configs:
        rows = D.pack(data, max_len)
        random.Random(1).shuffle(rows)
        batches = [rows[k:k + rows_per_batch] for k in range(0, len(rows) - rows_per_batch + 1, rows_per_batch)]

        def step(group):
            loss, _ = optimizer_step(backend, opt, [backend.collate(group)], s)
            return sum(len(r.input_ids) for r in group), loss

        try:
            r = _timed(step, batches, steps, warmup, device)
        except Exception as err:  # noqa: BLE001 - an out-of-memory config is reported, not fatal
            if "out of memory" not in str(err).lower():
                raise
            opt.zero_grad(set_to_none=True)
            r = {"oom": True}
        r.update(rows=rows_per_batch, width=max_len, attention=backend.attention, leftover_bytes=leftover,
                 padding_share=round(1 - sum(len(x.input_ids) for x in rows) / (len(rows) * max_len), 4))
        results.append(r)
        free()
    del backend, opt
    return results


def _timed(step, batches, steps: int, warmup: int, device: str) -> dict:
    free()
    if len(batches) < steps + warmup:
        raise SystemExit(f"only {len(batches)} batches for {steps}+{warmup} steps: use more --samples")
    for b in batches[:warmup]:
        step(b)
    sync(device)
    t0, tokens, losses = time.perf_counter(), 0, []
    for b in batches[warmup:warmup + steps]:
        n, loss = step(b)
        tokens += n
        losses.append(loss)
    sync(device)
    seconds = time.perf_counter() - t0
    return {"tokens_per_s": tokens / seconds, "peak_bytes": peak_bytes(device), "seconds": seconds,

            "tokens": tokens, "last_loss": losses[-1]}


def n_params(path: str) -> int:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(path)
    per_layer = (c.hidden_size * (c.hidden_size + 2 * c.num_key_value_heads * c.hidden_size // c.num_attention_heads)
                 + c.hidden_size * c.hidden_size + 3 * c.hidden_size * c.intermediate_size)
    embed = c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2)
    return c.num_hidden_layers * per_layer + embed


def report(shape: str, name: str, r: dict, n: int, device: str, base: dict | None) -> str:
    if r.get("oom"):
        return f"| {shape} | {name} | out of memory | | | | | |"
    peak = PEAK_FLOPS[device]
    mfu = f"{100 * 4 * n * r['tokens_per_s'] / peak:5.1f}%" if peak else "  n/a"
    ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "1.00x"
    mem = f"{r['peak_bytes'] / 2**30:6.2f} GiB"
    if r.get("leftover_bytes"):  # allocated before this loop loaded its model: not its own footprint
        mem += f" ({r['leftover_bytes'] / 2**30:.2f} GiB held before)"
    pad = f"{r['padding_share']:.1%}" if "padding_share" in r else f"{r.get('pad_share', 0):.1%}"
    return f"| {shape} | {name} | {r['tokens_per_s']:,.0f} | {ratio} | {mem} | {mfu} | {pad} | {r['last_loss']:.3f} |"


def bench_shape(shape: str, device: str, args, workdir: Path) -> list[str]:
    import torch

    folder = workdir / shape
    path = build_model(shape, device, folder)
    spec = SHAPES.get(shape, {"batch": 2, "checkpointing": False, "vocab_size": 16384})
    batch, ckpt = args.batch or spec["batch"], spec["checkpointing"]
    data = samples(args.samples, spec["vocab_size"])
    n = n_params(path)
    lines = []
    base = run_baseline(path, data, batch, ckpt, device, args.steps, args.warmup)
    lines.append(report(shape, f"baseline HF+PEFT, batch {batch} padded" + (", ckpt" if ckpt else ""), base, n, device, None))
    print(lines[-1], flush=True)
    free()
    configs = [(max(1, batch * k // 2), 2048) for k in args.scale]
    tag = ", ckpt" if ckpt else ""
    for attention in args.attention:
        try:
            results = run_ours(path, data, configs, ckpt, device, args.steps, args.warmup, attention=attention)
        except Exception as err:  # noqa: BLE001 - one attention kernel failing should not lose the other figures
            print(f"| {shape} | penwright {attention} | failed: {type(err).__name__}: {str(err)[:200]} |", flush=True)
            free()
            continue
        for r in results:
            lines.append(report(shape, f"penwright {r['attention']}, {r['rows']} packed rows x {r['width']}{tag}",
                                r, n, device, base))
        print("\n".join(lines[-len(results):]), flush=True)
    if args.qlora and shape == "7b" and device == "cuda":
        for r in run_ours(path, data, configs[:1], True, device, args.steps, args.warmup, quantization="4bit",
                          attention=args.attention[-1]):
            lines.append(report(shape, f"penwright QLoRA nf4 {r['attention']}, {r['rows']} packed rows x {r['width']}, ckpt",
                                r, n, device, base))
    if shape != "31m":
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(lines), flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=["31m", "0.5b", "7b"], help="repeatable (default: 31m)")
    parser.add_argument("--qlora", action="store_true", help="also a 4-bit (nf4) run of the 7b shape")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--batch", type=int, default=None, help="override the shape's baseline batch")
    parser.add_argument("--scale", type=int, action="append", default=None,
                        help="ours: tokens per step as a multiple of baseline batch x 1024 (rows of 2048); repeatable")
    parser.add_argument("--attention", action="append", choices=["auto", "sdpa", "varlen"],
                        help="ours: packed-row attention (repeatable; default auto = varlen on CUDA)")
    parser.add_argument("--make-lengths", action="store_true", help="rebuild chunk_lengths.json from ../shared/corpora")
    args = parser.parse_args()
    args.scale = args.scale or [1, 2]
    args.attention = args.attention or ["auto"]
    if args.make_lengths:
        lengths = make_lengths()
        LENGTHS.write_text(json.dumps({"source": "../shared/corpora (austen, doyle) paragraph chunks, target 600, "
                                       "max 1000 tokens, gutenberg-qwen2-31m tokenizer", "lengths": lengths}))
        print(f"{len(lengths)} chunks, mean {sum(lengths) / len(lengths):.0f} tokens -> {LENGTHS}")
        return 0
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}; torch {torch.__version__}")
    print("| shape | loop | tokens/s | vs baseline | peak memory | MFU | padding | last loss |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="penwright-bench-") as tmp:
        for shape in args.shape or ["31m"]:
            bench_shape(shape, device, args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
