"""Training throughput: the plain transformers + PEFT loop, TRL's packed peer and Penwright's trainer, in ONE run,
on the same data, each loop in a FRESH child process (its peak memory is its own).

    python benchmarks/train_throughput.py --shape 31m          # CPU here, the real 31M base
    benchmarks/device/train_bench.sh run                        # the device run: 0.5b, 7b, 7b nf4 (see that script)
    python benchmarks/train_throughput.py --shape 7b --ours 1 --ours 1:fused --ours 0:compile+fused --ours budget
    python benchmarks/train_throughput.py --held --shape 7b     # activation memory per token and layer, by mode
    python benchmarks/train_throughput.py --make-lengths        # rebuild benchmarks/chunk_lengths.json

Data is manuscript-shaped: sample lengths are drawn from `chunk_lengths.json`, the token lengths
of paragraph-aligned chunks of the Austen and Doyle corpora (target 600, max 1000 tokens of the
31M model's tokenizer), so padding waste counts. The first quarter of each sample is prompt
(masked, as in a continuation pair); every loop learns only the rest. All loops train in train mode.

Baseline (../shared/docs/baselines.md): bf16 `get_peft_model` LoRA r16/alpha32/dropout 0.05 on the
seven projections, AdamW, SDPA, HF's loss over full logits, batches padded to their longest sample.
Packed peer (`train_peer.py`, `--peer`): TRL's SFTTrainer, packing (bfd) + padding_free, TRL's fused LM head,
the same LoRA, attention `varlen` (torch's built-in FlashAttention varlen kernel, as flash_attention_2 would
give) or transformers' flex/sdpa, optionally with Liger's kernels.
Ours (`--ours`): the same LoRA through `TorchBackend.loss_sums` + `optimizer_step` (the code `run_training`
runs): best-fit packing into one padding-free row, FlashAttention varlen, loss only on target positions,
fused AdamW; per config the checkpointing (share of layers recomputed whole; `e`: the rest recompute their
elementwise work), the levers (`compile`: regional torch.compile of the decoder layers; `fused`: Liger's fused
linear cross-entropy) or `budget`: rows and checkpointing picked by the memory budget from the baseline's
measured peak. One model load for all of ours' configs; compiled configs run last.
Tokens/s counts real (non-pad) tokens. MFU = 4 * N * tokens/s / peak (LoRA: forward plus activation
gradients, no weight gradients), as in baselines.md, with peak 790 TFLOP/s (an H200's measured bf16 rate;
an H100 measured 798 here). `--deadline` bounds the whole run: a loop is skipped, not cut, when time is short.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
LENGTHS = HERE / "chunk_lengths.json"
SHARED = HERE.parent.parent / "shared"
PEAK_FLOPS = {"cuda": 790e12, "cpu": None}
RESULT = "RESULT "  # prefix of the child process's answer line on stdout
# Ours' configs by shape (issue 16, second device run): the levers that paid in the first (compile + fused CE) at the
# rows and checkpointing that fit the targets' memory, the memory budget's own pick, and one eager line
DEFAULT_OURS_CKPT = [  # 7b, at or under the padded baseline's peak (22.7 GiB), and the best mode
    "1:compile+fused",
    "budget:compile+fused",
    "0:compile+fused",
    "0:compile+fused+keep25",
]
DEFAULT_OURS = [  # 0.5b, at or under half the packed peer's peak (13.8 GiB): more rows, less kept for backward
    "0@4",
    "budget:compile+fused",
    "0.5:compile+fused@8",
    "1:compile+fused@16",
    "0:compile+fused@8",
    "0:compile+fused+keep50@8",
]
DEFAULT_OURS_NF4 = ["1:fused", "budget:fused", "1"]  # 7b in 4-bit (no compilation: bitsandbytes layers)

SHAPES = {  # Qwen2.5 dims (config.json of the published models); random-init weights
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        batch=8,
        checkpointing=False,
        rows=8,
    ),
    "7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
        batch=4,
        checkpointing=True,
        rows=2,
    ),
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


def held_per_layer(shape: str, ckpts: list[tuple[float, bool]], tokens: int = 256, layers: int = 4) -> list[str]:
    """Bytes a forward leaves held for backward, per token per decoder layer, in each checkpointing mode: a few
    layers of the shape in bf16 on the CPU, LoRA r16 with dropout, train mode. A tensor an op produced that is
    still alive after the forward (kept by autograd or cached by selective checkpointing) is counted once."""
    import gc
    import weakref

    import torch
    from peft import get_peft_model
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from transformers import AutoModelForCausalLM, Qwen2Config

    from penwright.trainer.backends.checkpointing import set_checkpointing

    dims = {k: v for k, v in SHAPES[shape].items() if k not in ("batch", "checkpointing", "rows")}
    dims.update(num_hidden_layers=layers, vocab_size=1024)
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_config(Qwen2Config(**dims, use_cache=False), dtype=torch.bfloat16), lora_config()
    )
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(0, 1024, (1, tokens))
    out = []
    for fraction, elementwise in ckpts:
        set_checkpointing(model.get_base_model(), fraction, elementwise, 16)
        refs = []

        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                refs.extend(weakref.ref(x) for x in tree_leaves(result) if isinstance(x, torch.Tensor))
                return result

        with Record():
            hidden = model.get_base_model().model(input_ids=ids).last_hidden_state
        gc.collect()
        live = {
            x.untyped_storage().data_ptr(): x.untyped_storage().nbytes() for x in (r() for r in refs) if x is not None
        }
        per_token = sum(n for ptr, n in live.items() if ptr not in weights) / tokens / layers
        tag = "no ckpt" if fraction == 0 else "ckpt" if fraction == 1 else f"ckpt {fraction:g} of the layers"
        if elementwise:
            tag = "ckpt elementwise only" if fraction == 0 else f"{tag}, the rest elementwise only"
        out.append(
            f"| {shape} | {tag} | {per_token / 1024:,.0f} KiB | {per_token / dims['hidden_size']:.1f} x hidden "
            f"| {per_token * 3700 * SHAPES[shape]['num_hidden_layers'] / 2**30:.2f} GiB |"
        )
        print(out[-1], flush=True)
        hidden.float().sum().backward()
        model.zero_grad(set_to_none=True)
    return out


def build_model(shape: str, device: str, folder: Path | None):
    """A random-init model of the shape (or the real 31M base); saved to `folder` when given (for 4-bit loading)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if shape == "31m":
        return str(SHARED / "models" / "gutenberg-qwen2-31m")
    dims = {k: v for k, v in SHAPES[shape].items() if k not in ("batch", "checkpointing", "rows")}
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

    return LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )


def run_baseline(path: str, data, batch: int, checkpointing: bool, device: str, steps: int, warmup: int) -> dict:
    """The plain recipe: full-logit HF loss on padded batches."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from penwright.trainer.data import IGNORE

    leftover = resident(device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation="sdpa", device_map={"": 0} if device == "cuda" else None
    )
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(model, lora_config())
    model.train()  # as HF's Trainer does: dropout and checkpointing are off in eval mode
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    order = list(range(len(data)))
    random.Random(1).shuffle(order)
    batches = [[data[i] for i in order[k : k + batch]] for k in range(0, len(order) - batch + 1, batch)]

    def step(rows):
        width = max(len(s) for s in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, IGNORE)
        for i, s in enumerate(rows):
            ids[i, : len(s)] = torch.tensor(s.input_ids)
            mask[i, : len(s)] = 1
            unshifted = [IGNORE] + s.labels[:-1]  # HF shifts labels itself
            labels[i, : len(s)] = torch.tensor(unshifted)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return sum(len(s) for s in rows), float(out.loss.detach())

    result = _timed(step, batches, steps, warmup, device)
    timed = batches[warmup : warmup + steps]
    capacity = sum(len(b) * max(len(x) for x in b) for b in timed)
    result["pad_share"] = 1 - sum(len(x) for b in timed for x in b) / capacity
    result["leftover_bytes"] = leftover
    return result


def run_ours(
    path: str,
    data,
    configs: list[dict],
    device: str,
    steps: int,
    warmup: int,
    quantization: str = "none",
    attention: str = "auto",
) -> list[dict]:
    """Penwright's path: TorchBackend + packing + target-only loss + optimizer_step, one model load, for each
    config: rows per batch, row length, share of layers checkpointed (`fraction`), the rest recompute
    elementwise work (`elementwise`), the levers (`compile`, `fused`) and, with `budget` (bytes), rows and
    checkpointing picked by the backend's memory budget instead. Compiled configs go last: compilation stays."""
    from penwright.trainer.backends.levers import Levers
    from penwright.trainer.backends.torch_backend import TorchBackend
    from penwright.trainer.settings import ModelSettings, TrainingSettings
    from penwright.trainer.train import make_optimizer

    leftover = resident(device)
    width = max(c["width"] for c in configs)
    s = TrainingSettings(
        rank=16,
        alpha=32,
        dropout=0.05,
        targets="attn_mlp",
        gradient_checkpointing=configs[0]["fraction"],
        recompute_elementwise=configs[0]["elementwise"],
        quantization=quantization,
        max_seq_length=width,
        attention=attention,
    )
    backend = TorchBackend(path, s, ModelSettings(max_context_tokens=width), device, levers=Levers()).load()
    backend.model.train()  # as run_training does
    opt = make_optimizer(backend.trainable_parameters(), s, device)
    results = []
    for c in configs:
        r = _ours_config(backend, opt, s, data, c, device, steps, warmup)
        r.update(
            attention=backend.attention,
            leftover_bytes=leftover,
            n_layers=backend.model.get_base_model().config.num_hidden_layers,
        )
        results.append(r)
        print(f"  ours {c}: {r.get('tokens_per_s', r)}", file=sys.stderr, flush=True)
        free()
    del backend, opt
    return results


def _ours_config(backend, opt, s, data, c: dict, device: str, steps: int, warmup: int) -> dict:
    from penwright.trainer import data as D
    from penwright.trainer.backends.levers import Levers
    from penwright.trainer.train import optimizer_step

    levers = backend.set_levers(
        Levers(
            compile_layers=c.get("compile", False),
            fused_loss=c.get("fused", False),
            activation_budget=c.get("keep", 1.0),
        )
    )
    rows = D.pack(data, c["width"])
    random.Random(1).shuffle(rows)
    row_tokens = sum(len(x.input_ids) for x in rows) // len(rows)
    n_rows, fraction, elementwise, planned = c["rows"], c["fraction"], c["elementwise"], None
    if c.get("budget"):
        free()
        planned = backend.plan_memory(c["budget"], row_tokens, max_rows=16)
        if planned is None:
            return {"failed": "the memory budget fits nothing", "budget": c["budget"]}
        n_rows, fraction, elementwise = planned.rows, planned.fraction, False
        if planned.keep != levers.activation_budget:
            levers = backend.set_levers(replace(levers, activation_budget=planned.keep))
    layers = backend.set_checkpointing(fraction, elementwise)
    batches = [rows[k : k + n_rows] for k in range(0, len(rows) - n_rows + 1, n_rows)]
    predicted = backend.predicted_peak(n_rows * row_tokens, fraction) if device == "cuda" else None

    def step(group):
        loss, _ = optimizer_step(backend, opt, [backend.collate(group)], s)
        return sum(len(r.input_ids) for r in group), loss

    try:
        r = _timed(step, batches, steps, warmup + (2 if levers.compile_layers else 0), device)
    except Exception as err:  # noqa: BLE001 - an out-of-memory or failing config is reported, not fatal
        if "out of memory" not in str(err).lower() and levers.tag() == "none":
            raise
        opt.zero_grad(set_to_none=True)
        r = {"oom": True} if "out of memory" in str(err).lower() else {"failed": f"{type(err).__name__}: {err}"[:300]}
    r.update(
        rows=n_rows,
        width=c["width"],
        ckpt_layers=len(layers["full"]),
        levers=levers.tag(),
        elementwise_layers=len(layers["elementwise"]),
        predicted_bytes=predicted,
        budget=c.get("budget"),
        padding_share=round(1 - sum(len(x.input_ids) for x in rows) / (len(rows) * c["width"]), 4),
    )
    return r


def _timed(step, batches, steps: int, warmup: int, device: str) -> dict:
    free()
    if len(batches) < steps + warmup:
        raise SystemExit(f"only {len(batches)} batches for {steps}+{warmup} steps: use more --samples")
    held = resident(device)  # the model, its adapter, and the optimizer state of an earlier config
    t_start = time.perf_counter()
    for b in batches[:warmup]:
        step(b)
    sync(device)
    graphs = compiled_graphs()
    t0, tokens, losses = time.perf_counter(), 0, []
    for b in batches[warmup : warmup + steps]:
        n, loss = step(b)
        tokens += n
        losses.append(loss)
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "warmup_seconds": t0 - t_start,
        "recompiled": compiled_graphs() - graphs,  # graphs torch.compile made during the timed steps (should be 0)
        "tokens_per_s": tokens / seconds,
        "peak_bytes": peak_bytes(device),
        "held_bytes": held,
        "seconds": seconds,
        "tokens": tokens,
        "last_loss": losses[-1],
    }


def compiled_graphs() -> int:
    """Graphs torch.compile has produced in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def n_params(path: str) -> int:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(path)
    per_layer = (
        c.hidden_size * (c.hidden_size + 2 * c.num_key_value_heads * c.hidden_size // c.num_attention_heads)
        + c.hidden_size * c.hidden_size
        + 3 * c.hidden_size * c.intermediate_size
    )
    embed = c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2)
    return c.num_hidden_layers * per_layer + embed


def report(shape: str, name: str, r: dict, n: int, device: str, base: dict | None, peer: dict | None = None) -> str:
    if r.get("failed"):
        return f"| {shape} | {name} | failed: {r['failed']} | | | | | | | |"
    if r.get("oom"):
        return f"| {shape} | {name} | out of memory | | | | | | | |"
    peak = PEAK_FLOPS[device]
    mfu = f"{100 * 4 * n * r['tokens_per_s'] / peak:5.1f}%" if peak else "  n/a"
    ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base and base.get("tokens_per_s") else "1.00x"
    vs_peer = f"{r['tokens_per_s'] / peer['tokens_per_s']:.2f}x" if peer and peer.get("tokens_per_s") else ""
    mem = f"{r['peak_bytes'] / 2**30:6.2f} GiB"
    if base and base.get("peak_bytes"):
        mem += " (under)" if r["peak_bytes"] <= base["peak_bytes"] else " (OVER)"
    if r.get("predicted_bytes"):
        mem += f", predicted {r['predicted_bytes'] / 2**30:.1f}"
    held = f"{r.get('held_bytes', 0) / 2**30:.2f} GiB" if device == "cuda" else "n/a"
    if r.get("leftover_bytes"):  # allocated before this loop loaded its model: not its own footprint
        held += f" (+{r['leftover_bytes'] / 2**30:.2f} GiB from before)"
    pad = f"{r['padding_share']:.1%}" if "padding_share" in r else f"{r.get('pad_share', 0):.1%}"
    if r.get("recompiled"):
        name += f" [{r['recompiled']} graphs compiled during the timed steps]"
    return (
        f"| {shape} | {name} | {r['tokens_per_s']:,.0f} | {ratio} | {vs_peer} | {mem} | {held} | {mfu} | {pad} "
        f"| {r['last_loss']:.3f} |"
    )


def ckpt_tag(r: dict) -> str:
    k, e, n = r.get("ckpt_layers", 0), r.get("elementwise_layers", 0), r.get("n_layers", 0)
    whole = "no ckpt" if k == 0 else "ckpt" if k == n else f"ckpt {k}/{n} layers"
    if e:
        return "ckpt elementwise only" if k == 0 else f"{whole}, the rest elementwise only"
    return whole


def parse_ckpt(value: str) -> tuple[float, bool]:
    """`0.25` -> (0.25, False): a quarter of the layers recomputed whole, the rest keep everything;
    `0.25e` -> (0.25, True): the rest keep only their big products (recompute_elementwise)."""
    fraction = float(value.removesuffix("e"))
    if not 0 <= fraction <= 1:
        raise argparse.ArgumentTypeError(f"{value}: a share between 0 and 1, optionally followed by e")
    return fraction, value.endswith("e")


def parse_ours(value: str) -> dict:
    """An ours config: `CKPT[:LEVER+LEVER][@ROWS]`, CKPT as --ckpt or `budget` (rows and checkpointing from the
    memory budget, set to the baseline's measured peak); levers `compile`, `fused`, `keepNN` (compiled layers keep
    NN% of their activations for backward: torch's partitioner budget). E.g. `1`, `0:compile+fused+keep50@8`."""
    spec, _, rows = value.partition("@")
    mode, _, levers = spec.partition(":")
    wanted = set(filter(None, levers.split("+")))
    keeps = [w for w in wanted if w.startswith("keep") and w[4:].isdigit()]
    if wanted - {"compile", "fused", *keeps} or len(keeps) > 1:
        raise argparse.ArgumentTypeError(f"{value}: levers are compile, fused and one keepNN")
    fraction, elementwise = (1.0, False) if mode == "budget" else parse_ckpt(mode)
    return {
        "fraction": fraction,
        "elementwise": elementwise,
        "compile": "compile" in wanted,
        "fused": "fused" in wanted,
        "keep": int(keeps[0][4:]) / 100 if keeps else 1.0,
        "budget": mode == "budget",
        "rows": int(rows) if rows else None,
    }


def held_estimate(ckpt: tuple[float, bool]) -> float:
    """Relative activation memory of a checkpointing choice (for ordering only)."""
    fraction, elementwise = ckpt
    return (1 - fraction) * (0.25 if elementwise else 1.0)


def in_fresh_process(job: dict, timeout: float | None = None) -> dict:
    """Runs one loop (`child`) in a new Python process: its peak memory is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"failed": f"stopped after {timeout:.0f} s (the run's deadline)"}
    finally:
        tag = f"{job['loop']} {job.get('quantization', '')} {job.get('attention', '')}".strip()
        print(f"  [{tag}: {time.monotonic() - t0:.0f} s in its process]", file=sys.stderr, flush=True)
    answers = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not answers:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[-300:]
        return {"failed": f"exit {proc.returncode}: {tail}"}
    return json.loads(answers[-1][len(RESULT) :])


def child(job: dict) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = samples(job["samples"], job["vocab"])
    if job["loop"] == "baseline":
        return run_baseline(job["path"], data, job["batch"], job["ckpt"], device, job["steps"], job["warmup"])
    if job["loop"] == "trl":
        sys.path.insert(0, str(HERE))  # train_peer.py beside this file (PYTHONSAFEPATH leaves it off sys.path)
        from train_peer import run_trl

        return run_trl(job["path"], data, job, device)
    if job.get("liger"):  # before the model is built: Liger patches the Qwen2 module classes
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2

        apply_liger_kernel_to_qwen2(
            rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
        )
    return {
        "results": run_ours(
            job["path"],
            data,
            job["configs"],
            device,
            job["steps"],
            job["warmup"],
            quantization=job["quantization"],
            attention=job["attention"],
        )
    }


def ours_label(label: str, r: dict) -> str:
    if "rows" not in r:  # the memory budget found nothing that fits
        return f"{label} {r.get('attention', '')}, memory budget {r.get('budget', 0) / 2**30:.1f} GiB"
    name = f"{label} {r['attention']}, {r['rows']} packed rows x {r['width']}, {ckpt_tag(r)}"
    if r.get("budget"):
        name += f" (memory budget {r['budget'] / 2**30:.1f} GiB)"
    return name + (f", {r['levers']}" if r.get("levers", "none") != "none" else "")


def ours_lines(
    shape: str, label: str, job: dict, n: int, device: str, base: dict, peer: dict | None, timeout: float
) -> list[tuple[str, dict]]:
    out = in_fresh_process(job, timeout)
    if "failed" in out:
        return [(report(shape, f"{label} {job['attention']}", out, n, device, base), out)]
    return [(report(shape, ours_label(label, r), r, n, device, base, peer), r) for r in out["results"]]


def fastest_within(limit: int | None, lines: list[tuple[str, dict]], what: str) -> str:
    """The fastest line of ours at or under `limit` bytes of peak memory (what the targets are judged on)."""
    fits = [
        (r["tokens_per_s"], line) for line, r in lines if r.get("tokens_per_s") and limit and r["peak_bytes"] <= limit
    ]
    if not fits:
        return f"fastest at or under {what}: none of ours fits"
    return f"fastest at or under {what}: {max(fits)[1]}"


class Deadline:
    """The whole run's time limit: each loop gets what is left, and a loop is skipped under `reserve` seconds."""

    def __init__(self, seconds: float | None):
        self.end = time.monotonic() + seconds if seconds else None

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def allows(self, reserve: float) -> bool:
        return self.end is None or self.left() >= reserve


def peer_variants(values: list[str]) -> list[tuple[str, bool]]:
    """`varlen`, `flex`, `sdpa`, each optionally `+liger` -> (attention, liger)."""
    return [(v.removesuffix("+liger"), v.endswith("+liger")) for v in values]


def run_peers(
    shape: str,
    common: dict,
    rows: int,
    ckpt: bool,
    variants: list[str],
    args,
    n: int,
    device: str,
    base: dict,
    clock: Deadline,
    quantization: str = "none",
    peer: dict | None = None,
) -> list[tuple[str, dict]]:
    """TRL's packed peer in each of `variants` (attention[+liger]), a fresh process each; `peer`: the reference of
    their `vs packed peer` column."""
    out = []
    for attention, liger in peer_variants(variants):
        if quantization != "none" and (liger or out):  # 4-bit: the first variant only
            continue
        label = f"TRL SFTTrainer packed + padding-free, {attention}" + (" + Liger" if liger else "")
        label += f", {rows} rows x 2048" + (", ckpt" if ckpt else "") + (" QLoRA nf4" if quantization != "none" else "")
        if not clock.allows(args.reserve):
            out.append((f"| {shape} | {label} | skipped: the run's deadline | | | | | | | |", {}))
            continue
        r = in_fresh_process(
            {
                **common,
                "loop": "trl",
                "rows": rows,
                "width": 2048,
                "ckpt": ckpt,
                "attention": attention,
                "liger": liger,
                "quantization": quantization,
            },
            clock.left(),
        )
        out.append((report(shape, label, r, n, device, base, peer), r))
        print(out[-1][0], flush=True)
    return out


def ours_configs(specs: list[dict], rows: int, budget: int | None) -> list[dict]:
    """Plain configs first, then the compiled ones (compilation stays on the layers once applied)."""
    configs = [
        {**c, "rows": c["rows"] or rows, "width": 2048, "budget": budget if c["budget"] else None}
        for c in specs
        if not (c["budget"] and not budget)
    ]
    return sorted(configs, key=lambda c: (c["compile"], -c.get("keep", 1.0)))  # one recompile per partitioner budget


def budget_for(base: dict, peer: dict | None, ckpt: bool) -> int | None:
    """The memory budget of ours' `budget` configs: the baseline's measured peak (7b's target), and where the
    baseline does not checkpoint (0.5b), no more than half the packed peer's peak either (0.5b's target)."""
    limits = [base.get("peak_bytes")] + ([peer.get("peak_bytes", 0) // 2] if peer and not ckpt else [])
    limits = [x for x in limits if x]
    return min(limits) if limits else None


def bench_shape(shape: str, device: str, args, workdir: Path, clock: Deadline) -> list[str]:
    folder = workdir / shape
    path = build_model(shape, device, folder)
    spec = SHAPES.get(shape, {"batch": 2, "checkpointing": False, "vocab_size": 16384})
    batch, ckpt = args.batch or spec["batch"], spec["checkpointing"]
    common = {
        "path": path,
        "samples": args.samples,
        "vocab": spec["vocab_size"],
        "steps": args.steps,
        "warmup": args.warmup,
    }
    n = n_params(path)
    base = in_fresh_process({**common, "loop": "baseline", "batch": batch, "ckpt": ckpt}, clock.left())
    lines = [
        (
            report(
                shape, f"baseline HF+PEFT, batch {batch} padded" + (", ckpt" if ckpt else ""), base, n, device, None
            ),
            base,
        )
    ]
    print(lines[-1][0], flush=True)
    rows = args.rows or spec.get("rows", max(1, batch // 2))  # the peer: 8 x 2048 (0.5b), 2 x 2048 (7b)
    if args.qlora and shape == "7b" and device == "cuda":  # before the bf16 loops: the 4-bit pair was never measured
        lines += qlora_lines(shape, common, rows, args, n, device, base, clock)
    peers = run_peers(shape, common, rows, ckpt, args.peer[:1], args, n, device, base, clock)
    lines += peers
    peer = peers[0][1] if peers else None
    specs = args.ours or [parse_ours(v) for v in (DEFAULT_OURS_CKPT if ckpt else DEFAULT_OURS)]
    job = {
        **common,
        "loop": "ours",
        "quantization": "none",
        "attention": args.attention[-1],
        "configs": ours_configs(specs, rows, budget_for(base, peer, ckpt) if device == "cuda" else None),
    }
    if clock.allows(args.reserve):
        lines += ours_lines(shape, "penwright", job, n, device, base, peer, clock.left())
        print("\n".join(line for line, _ in lines[-len(job["configs"]) :]), flush=True)
    lines += run_peers(shape, common, rows, ckpt, args.peer[1:], args, n, device, base, clock, peer=peer)  # the rest
    if shape != "31m":
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    summary = [line for line, _ in lines]
    ours = [(line, r) for line, r in lines if "penwright" in line and "QLoRA" not in line]
    summary.append(fastest_within(base.get("peak_bytes"), ours, "the baseline's peak memory"))
    if peer and peer.get("peak_bytes"):
        summary.append(fastest_within(peer["peak_bytes"] // 2, ours, "half the packed peer's peak memory"))
    nf4 = [(line, r) for line, r in lines if "penwright QLoRA" in line]
    if nf4:
        summary.append(fastest_within(int(args.nf4_budget * 2**30), nf4, f"{args.nf4_budget:g} GiB in 4-bit"))
    print("\n".join(summary), flush=True)
    return summary


def qlora_lines(
    shape: str, common: dict, rows: int, args, n: int, device: str, base: dict, clock: Deadline
) -> list[tuple[str, dict]]:
    """The 4-bit pair: the first peer variant in nf4, and ours in nf4 (no compilation: bitsandbytes layers)."""
    out = run_peers(shape, common, rows, True, args.peer[:1], args, n, device, base, clock, quantization="4bit")
    peer = out[0][1] if out else None
    specs = [c for c in (args.ours_nf4 or [parse_ours(v) for v in DEFAULT_OURS_NF4]) if not c["compile"]]
    job = {
        **common,
        "loop": "ours",
        "quantization": "4bit",
        "attention": args.attention[-1],
        "configs": ours_configs(specs, rows, int(args.nf4_budget * 2**30)),
    }
    if clock.allows(args.reserve):
        out += ours_lines(shape, "penwright QLoRA nf4", job, n, device, base, peer, clock.left())
        print("\n".join(line for line, _ in out[1:]), flush=True)
    return out


def main() -> int:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        print(RESULT + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    if args.held:
        print("| shape | checkpointing | held per token per layer | | all layers at 3,700 tokens (2 packed rows) |")
        print("| --- | --- | --- | --- | --- |")
        for shape in args.shape or ["7b"]:
            held_per_layer(shape, args.ckpt or [(0.0, False), (0.0, True), (0.5, False), (0.5, True), (1.0, False)])
        return 0
    if args.make_lengths:
        lengths = make_lengths()
        LENGTHS.write_text(
            json.dumps(
                {
                    "source": "../shared/corpora (austen, doyle) paragraph chunks, target 600, "
                    "max 1000 tokens, gutenberg-qwen2-31m tokenizer",
                    "lengths": lengths,
                }
            )
        )
        print(f"{len(lengths)} chunks, mean {sum(lengths) / len(lengths):.0f} tokens -> {LENGTHS}")
        return 0
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}; torch {torch.__version__}")
    print(
        "| shape | loop | tokens/s | vs baseline | vs packed peer | peak memory (vs baseline) | held before steps "
        "| MFU | padding | last loss |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    clock = Deadline(args.deadline)
    with tempfile.TemporaryDirectory(prefix="penwright-bench-") as tmp:
        for shape in args.shape or ["31m"]:
            if clock.allows(args.reserve):
                bench_shape(shape, device, args, Path(tmp), clock)
            else:
                print(f"{shape}: skipped, the run's deadline", flush=True)
    return 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=["31m", "0.5b", "7b"], help="repeatable (default: 31m)")
    parser.add_argument("--qlora", action="store_true", help="also a 4-bit (nf4) pair, the peer's and ours, of 7b")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--batch", type=int, default=None, help="override the shape's baseline batch")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="rows of 2048 per step for the peer and ours (default: 8 for 0.5b, 2 for 7b; ours' "
        "configs can override with @ROWS)",
    )
    parser.add_argument(
        "--attention",
        action="append",
        choices=["auto", "sdpa", "varlen"],
        help="ours: packed-row attention (the last one given; default auto = varlen on CUDA)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=None,
        help="the packed peer, TRL SFTTrainer with packing and padding-free, one fresh process each: "
        "attention varlen, flex or sdpa, optionally +liger (repeatable; the first is the "
        "reference of `vs packed peer`; default: varlen, varlen+liger)",
    )
    parser.add_argument(
        "--ours",
        type=parse_ours,
        action="append",
        default=None,
        help="ours, in one process: CKPT[:LEVER+LEVER][@ROWS], CKPT a share of layers recomputed "
        "whole (0..1, trailing e: the rest recompute elementwise work) or `budget`; levers "
        f"compile, fused (repeatable; default with checkpointing: {' '.join(DEFAULT_OURS_CKPT)}; "
        f"else {' '.join(DEFAULT_OURS)})",
    )
    parser.add_argument(
        "--ours-nf4",
        type=parse_ours,
        action="append",
        default=None,
        help=f"ours in 4-bit (7b with --qlora), as --ours without compile (default: {' '.join(DEFAULT_OURS_NF4)})",
    )
    parser.add_argument(
        "--nf4-budget",
        type=float,
        default=16.0,
        help="GiB: the memory budget of the 4-bit `budget` config (the target)",
    )
    parser.add_argument("--ckpt", type=parse_ckpt, action="append", default=None, help="--held: the modes to measure")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds for the whole run: each loop gets what is left, none starts with under --reserve",
    )
    parser.add_argument("--reserve", type=float, default=30.0)
    parser.add_argument(
        "--held",
        action="store_true",
        help="only print the activation memory per token and layer "
        "held for backward in each --ckpt mode (a few layers of each --shape on the CPU)",
    )
    parser.add_argument("--make-lengths", action="store_true", help="rebuild chunk_lengths.json from ../shared/corpora")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one loop, in a fresh process
    args = parser.parse_args()
    args.attention = args.attention or ["auto"]
    args.peer = args.peer or ["varlen", "varlen+liger"]
    return args


if __name__ == "__main__":
    sys.exit(main())
