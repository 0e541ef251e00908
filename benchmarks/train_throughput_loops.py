"""The loops of `train_throughput.py`, each run in a fresh child process (`child`): the plain transformers + PEFT
baseline on padded batches, and Penwright's trainer (`TorchBackend.loss_sums` + `optimizer_step`) over configs;
TRL's packed peer is `train_peer.py`. Also the data (manuscript-shaped samples of random tokens) and the random-init
models they train."""

from __future__ import annotations

import gc
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


LENGTHS = HERE / "chunk_lengths.json"

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
    kbit_fp32: bool = True,
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
    backend = TorchBackend(
        path, s, ModelSettings(max_context_tokens=width), device, levers=Levers(kbit_fp32=kbit_fp32)
    ).load()  # the k-bit preparation is chosen at load: one process per choice
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
            kbit_fp32=backend.levers.kbit_fp32,
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
            kbit_fp32=job.get("kbit_fp32", True),
        )
    }
