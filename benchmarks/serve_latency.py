"""Serving latency: time to first token (TTFT) and total time of inline-completion-shaped requests.

Requests: ~1,000 prompt tokens (random ids, a new prompt each time), 24-48 new tokens, greedy,
through the real Engine with a LoRA adapter live. Reported per configuration: p50/p95/p99 TTFT
and total, decode tokens/s, at 1 and 8 concurrent clients, idle and while a LoRA training loop
runs in another process on the same device. The plain-PEFT baseline (`model.generate()` with an
unmerged adapter, batch 1, as in ../shared/docs/baselines.md) is measured in the same run.
Each engine configuration runs with max_batch 1 (one sequence per forward pass, in turn: the
engine before batched decode) and with batched decode (`--max-batch`, default 1 and 8), and a
side-by-side table gives their ratios. Then the hot-swap check on the last configuration: 8
clients streaming while 10 promotions happen; failed requests and the engine's pause per swap.

    python benchmarks/serve_latency.py --model ../shared/models/gutenberg-qwen2-31m      # CPU
    python benchmarks/serve_latency.py --shape 0.5b --shape 7b --device cuda  # GPU, random-init Qwen2.5 shapes
    python benchmarks/serve_latency.py --shape 0.5b --shape 7b --device cuda --only-merged --requests 12 \
        --requests-per-client 2                                                            # the H200 run (~5 min)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # Qwen2.5 configurations (the weights' values do not change the timing)
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,  # rehearsals
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=True,
    ),
    "7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _bootstrap_imports() -> None:
    """Let an uninstalled checkout (e.g. on the GPU machine) import penwright.server from the folders."""
    try:
        import penwright.server.engine  # noqa: F401

        return
    except ImportError:
        pass
    import importlib.util

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import penwright

    for name, folder in (("penwright.server", "server"), ("penwright.trainer", "trainer"), ("penwright.rag", "rag")):
        spec = importlib.util.spec_from_file_location(
            name, ROOT / folder / "__init__.py", submodule_search_locations=[str(ROOT / folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(penwright, name.split(".")[1], module)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))] if s else float("nan")


# ---- model, tokenizer, adapters ------------------------------------------------------------------------
def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly `vocab_size` ids (no hub access for Qwen's own)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size - 1)}
    vocab["<|endoftext|>"] = vocab_size - 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_model(args, shape: str | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if shape is None:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device)
        return model.eval(), AutoTokenizer.from_pretrained(args.model), Path(args.model).name
    config = Qwen2Config(
        **SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6, eos_token_id=SHAPES[shape]["vocab_size"] - 1
    )
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    return model.eval(), synthetic_tokenizer(config.vocab_size), f"Qwen2.5-{shape}-shaped"


def make_adapters(model, folder: Path, n: int = 2, rank: int = 16) -> list[Path]:
    """Random (non-identity) LoRA r=16 adapters on all seven projections, saved as PEFT folders."""
    import torch
    from peft import LoraConfig, get_peft_model

    out = []
    for i in range(n):
        torch.manual_seed(100 + i)
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS, init_lora_weights=False)
        peft_model = get_peft_model(model, cfg)
        path = folder / f"adapter{i}"
        peft_model.save_pretrained(path)
        model = peft_model.unload()  # back to the plain base model
        out.append(path)
    return out


def prompts(tokenizer, n: int, length: int, seed: int) -> list[tuple[list[int], int]]:
    """(prompt ids, max_tokens) pairs: a fresh random prompt each, 24-48 new tokens."""
    rng = random.Random(seed)
    top = min(len(tokenizer), 150000) - 2
    return [([rng.randrange(10, top) for _ in range(length)], rng.randint(24, 48)) for _ in range(n)]


# ---- measurements -------------------------------------------------------------------------------------
def run_clients(engine, work: list, clients: int) -> dict:
    """`clients` threads share `work`; each request's TTFT (submit -> first text) and total time."""
    from penwright.server.engine import Delta, Finished, GenerationRequest, SamplingParams

    ttft, total, tokens, errors, each = [], [], [], [], []
    lock = threading.Lock()
    queue = list(work)
    start = time.perf_counter()

    def client():
        while True:
            with lock:
                if not queue:
                    return
                ids, max_tokens = queue.pop()
            t0 = time.perf_counter()
            first = None
            try:
                for item in engine.submit(GenerationRequest(ids, SamplingParams(max_tokens=max_tokens))):
                    if isinstance(item, Delta) and first is None:
                        first = time.perf_counter() - t0
                    elif isinstance(item, Finished):
                        with lock:
                            ttft.append(first if first is not None else time.perf_counter() - t0)
                            total.append(time.perf_counter() - t0)
                            tokens.append(item.completion_tokens)
                            each.append((round(1000 * (t0 - start), 1), round(1000 * ttft[-1], 1)))
            except Exception as err:  # counted, reported
                errors.append(repr(err))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    decode = sum(t - f for t, f in zip(total, ttft))
    return {
        "clients": clients,
        "requests": len(total),
        "errors": len(errors),
        "ttft_ms": {p: 1000 * pct(ttft, p) for p in (50, 95, 99)},
        "total_ms": {p: 1000 * pct(total, p) for p in (50, 95, 99)},
        "tok_s_per_client": sum(tokens) / sum(total) * 1 if total else 0.0,
        "decode_tok_s": sum(n - 1 for n in tokens) / decode if decode > 0 else 0.0,
        "tok_s_overall": sum(tokens) / wall,
        "submitted_ms_ttft_ms": sorted(each),  # (submitted at, TTFT) of each request: which ones waited
    }


def step_anatomy(engine, span: int = 2048) -> dict:
    """On the engine thread, idle: ms per replay of the captured step back to back (no host work between them), for
    1 and 8 rows, and CUDA kernels per step of the fused and the modules' step (torch profiler)."""

    def run() -> dict:
        import torch
        from torch.profiler import ProfilerActivity, profile

        d = engine.backend.static
        if d is None or not d.ready or d.busy:
            return {}
        out: dict = {"fused_step": d.fused is not None}
        for b in (1, 8):
            graph = d.graphs.get(d.bucket(b, span))
            if graph is None:
                continue
            d.pos.zero_(), d.ids.zero_()
            for _ in range(50):  # (the clocks ramp up from idle)
                graph.replay()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(100):
                graph.replay()
            torch.cuda.synchronize()
            out[f"replay_ms_{b}_rows"] = round((time.perf_counter() - t0) / 100 * 1000, 3)
        for name, step in (("fused", d.fused), ("modules", d.body)):
            if step is None:
                continue
            d.pos.zero_(), d.ids.zero_()
            step(1, span)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step(1, span)
                torch.cuda.synchronize()
            out[f"kernels_{name}"] = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
        d.pos.zero_(), d.ids.zero_()
        return out

    try:
        return engine.call(run)
    except Exception as err:  # a diagnostic only
        return {"error": repr(err)}


def baseline(model, tokenizer, adapter: Path, work: list) -> dict:
    """Plain transformers generate() + unmerged PEFT adapter, batch 1 (the recipe in baselines.md)."""
    import torch
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter))
    ttft, total, tokens = [], [], []
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    with torch.inference_mode():
        for i, (ids, n) in enumerate(work):
            x = torch.tensor([ids], device=next(model.parameters()).device)
            kw = dict(do_sample=False, pad_token_id=tokenizer.eos_token_id)
            sync()
            t0 = time.perf_counter()
            peft_model.generate(x, max_new_tokens=1, min_new_tokens=1, **kw)
            sync()
            t1 = time.perf_counter()
            peft_model.generate(x, max_new_tokens=n, min_new_tokens=n, **kw)
            sync()
            t2 = time.perf_counter()
            if i >= 2:  # warm-up
                ttft.append(t1 - t0), total.append(t2 - t1), tokens.append(n)
    peft_model.unload()
    return {
        "clients": 1,
        "requests": len(total),
        "errors": 0,
        "ttft_ms": {p: 1000 * pct(ttft, p) for p in (50, 95, 99)},
        "total_ms": {p: 1000 * pct(total, p) for p in (50, 95, 99)},
        "tok_s_per_client": sum(tokens) / sum(total),
        "tok_s_overall": sum(tokens) / sum(total),
    }


def swap_under_load(engine, adapters: list[Path], work: list, promotions: int = 10) -> dict:
    """8 clients stream while `promotions` hot-swaps happen; no request may fail."""
    done = threading.Event()
    result: dict = {}

    def load():
        result["load"] = run_clients(engine, work, 8)
        done.set()

    t = threading.Thread(target=load)
    t.start()
    pauses, walls = [], []
    for i in range(promotions):
        time.sleep(0.15)
        t0 = time.perf_counter()
        pauses.append(engine.set_live(f"v{10 + i}", adapters[i % len(adapters)]))
        walls.append(time.perf_counter() - t0)
    t.join()
    return {
        "promotions": promotions,
        "failed_requests": result["load"]["errors"],
        "requests": result["load"]["requests"],
        "engine_pause_ms": {"p50": 1000 * pct(pauses, 50), "p95": 1000 * pct(pauses, 95), "max": 1000 * max(pauses)},
        "swap_wall_ms": {"p50": 1000 * pct(walls, 50), "max": 1000 * max(walls)},
        "during_swaps": result["load"],
        "loaded_after": engine.adapters(),
    }


# ---- a training run beside the server --------------------------------------------------------------
def train_loop(args) -> None:
    """Child process: LoRA training steps on the same device until killed (prints 'training' once running)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _, _ = build_model(args, args.shape[0] if args.shape else None)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS))
    model.train()
    if args.device == "cuda":
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch, seq = (4, 512) if args.device == "cuda" else (1, 256)
    x = torch.randint(10, min(30000, model.config.vocab_size), (batch, seq), device=args.device)
    step = 0
    while True:
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        step += 1
        if step == 1:
            print("training", flush=True)


def start_training(args, shape: str | None) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--train-loop", "--device", args.device]
    cmd += ["--shape", shape] if shape else ["--model", args.model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    if "training" not in line:
        raise RuntimeError(f"training loop did not start: {line!r}")
    return proc


# ---- main ------------------------------------------------------------------------------------------------
def past_deadline(args) -> bool:
    return args.deadline is not None and time.perf_counter() - T0 > args.deadline


def bench_model(args, shape: str | None, out: dict) -> None:
    t0 = time.perf_counter()
    model, tok, label = build_model(args, shape)
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    adapters = make_adapters(model, tmp)
    print(f"\n## {label} on {args.device} (built in {time.perf_counter() - t0:.1f}s)", flush=True)
    res = out.setdefault(label, {})
    n1, n8 = args.requests, args.requests_per_client * 8
    if not args.only_merged:
        res["baseline: generate() + unmerged PEFT"] = baseline(
            model, tok, adapters[0], prompts(tok, n1 + 2, args.prompt_tokens, 1)
        )
        report(label, res, args)
    if args.generate_baselines:
        generate_baselines(model, tok, args, res)
    merges = [True] if args.only_merged else [False, True]
    variants = [(merge, mb, kind) for kind in args.engines for merge in merges for mb in args.max_batch]
    for merge, mb, kind in variants:  # idle
        if past_deadline(args):
            print(f"(deadline: skipped {variant_name(merge, mb, kind)})")
            continue
        name = variant_name(merge, mb, kind)
        with serving(model, tok, label, adapters, merge, mb, args.prompt_tokens, kind, res) as engine:
            res[f"{name}, 1 client, idle"] = run_clients(engine, prompts(tok, n1, args.prompt_tokens, 3), 1)
            if args.fixed_tokens:
                fixed = [(ids, args.fixed_tokens) for ids, _ in prompts(tok, n1, args.prompt_tokens, 8)]
                res[f"{name}, 1 client, {args.fixed_tokens} tokens"] = run_clients(engine, fixed, 1)
            res[f"{name}, 8 clients, idle"] = run_clients(engine, prompts(tok, n8, args.prompt_tokens, 4), 8)
            if (merge, mb, kind) == variants[-1] and not args.no_hot_swap:
                res[f"hot-swap: 8 clients streaming, 10 promotions ({name})"] = swap_under_load(
                    engine, adapters, prompts(tok, n8, args.prompt_tokens, 7)
                )
            if kind != "dynamic":
                res[f"{name}: static decode"] = engine.status().get("static_decode")
        report(label, res, args)
    if not args.no_training and not past_deadline(args):  # the merged engine beside a training run
        trainer = start_training(args, shape)
        try:
            for mb in args.max_batch:
                kind = args.engines[-1]
                name = variant_name(True, mb, kind)
                with serving(model, tok, label, adapters, True, mb, args.prompt_tokens, kind, res) as engine:
                    res[f"{name}, 1 client, training"] = run_clients(engine, prompts(tok, n1, args.prompt_tokens, 5), 1)
                    res[f"{name}, 8 clients, training"] = run_clients(
                        engine, prompts(tok, n8, args.prompt_tokens, 6), 8
                    )
        finally:
            trainer.kill()
            trainer.wait()
        report(label, res, args)
    compare(label, res, args)
    summary(label, res, args)
    del model
    release_memory()


def release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def variant_name(merge: bool, max_batch: int, kind: str = "dynamic") -> str:
    name = f"engine, {'live adapter merged' if merge else 'unmerged PEFT'}, max_batch {max_batch}"
    labels = {
        "dynamic": "",
        "static": ", static KV + CUDA graphs",
        "static+compile": ", static KV + CUDA graphs + torch.compile",
    }
    return name + labels.get(kind, f", {kind}")


@contextlib.contextmanager
def serving(
    model,
    tok,
    label: str,
    adapters: list[Path],
    merge: bool,
    max_batch: int,
    prompt_tokens: int,
    kind: str = "dynamic",
    res: dict | None = None,
):
    """An Engine over the shared model with adapter v1 live, warmed up; the plain model is restored after.
    `kind` "static": static KV + CUDA graphs (the CUDA default), its start and warm-up timed; "dynamic": off."""
    from penwright.server.engine import Engine
    from penwright.server.engine.torch_backend import TorchBackend

    t0 = time.perf_counter()
    backend = TorchBackend(
        label,
        merge_live=merge,
        preloaded=(model, tok),
        static_decode=kind.startswith("static"),
        static_compile=kind == "static+compile",
    )
    engine = Engine(backend, max_active=16, max_batch=max_batch).start()
    started = time.perf_counter() - t0
    try:
        warm = engine.warm_up()  # the daemon does this in the background while the dynamic path serves
        if res is not None and kind != "dynamic" and args_device(model) == "cuda":
            res[f"{variant_name(merge, max_batch, kind)}: step anatomy"] = step_anatomy(engine)
        if res is not None and kind != "dynamic":
            again = f"{variant_name(merge, max_batch, kind)}: start" in res  # a later engine in this process
            res[f"{variant_name(merge, max_batch, kind)}: start{' (again, warm process)' if again else ''}"] = {
                "engine_start_s": started,
                "warm_up_s": warm,
                "cold_start_s": time.perf_counter() - t0,
            }
        engine.set_live("v1", adapters[0])
        run_clients(engine, prompts(tok, 3, prompt_tokens, 2), 1)  # warm-up
        run_clients(engine, prompts(tok, 8, 64, 2), 8)  # and of the batched shapes
        yield engine
    finally:
        engine.call(engine.backend._slots.unmerge)  # the next engine gets the unmerged base weights
        engine.stop()
        if hasattr(engine.backend.model, "peft_config"):
            engine.backend.model.unload()
        engine.backend.static = None  # its KV pool and graphs
        release_memory()


def args_device(model) -> str:
    return next(model.parameters()).device.type


def generate_baselines(model, tok, args, res: dict) -> None:
    """Plain `model.generate()` (no engine), greedy, batch 1, on the base weights (a merged adapter costs nothing at
    decode): the default dynamic cache and `cache_implementation="static"` (transformers compiles the decode step).
    A 32-token completion's total time, and decode tok/s from the difference of 32- and 8-token runs."""
    import torch

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    work = [ids for ids, _ in prompts(tok, args.generate_requests, args.prompt_tokens, 9)]
    for impl in ("dynamic", "static"):
        if past_deadline(args):
            print(f"(deadline: skipped generate() {impl})")
            continue
        kw = {"do_sample": False, "pad_token_id": tok.eos_token_id}
        if impl == "static":
            kw["cache_implementation"] = "static"

        def gen(ids, n):
            x = torch.tensor([ids], device=args.device)
            sync()
            t = time.perf_counter()
            model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, **kw)
            sync()
            return time.perf_counter() - t

        with torch.inference_mode():
            t0 = time.perf_counter()
            gen(work[0], 32)  # first call: compiles (static) / warms up; the 8-token runs reuse its cache
            first = time.perf_counter() - t0
            gen(work[0], 8)
            t8, t32 = [gen(ids, 8) for ids in work], [gen(ids, 32) for ids in work]
        d8, d32 = pct(t8, 50), pct(t32, 50)
        res[f"generate() {impl} cache"] = {
            "completion_32_ms": 1000 * d32,
            "completion_8_ms": 1000 * d8,
            "decode_tok_s": 24 / (d32 - d8) if d32 > d8 else float("nan"),
            "first_call_s": first,
            "requests": len(work),
        }
        r = res[f"generate() {impl} cache"]
        print(
            f"generate() {impl} cache: 32-token completion p50 {r['completion_32_ms']:.0f} ms, decode "
            f"{r['decode_tok_s']:.0f} tok/s (first call {first:.1f} s)",
            flush=True,
        )


def report(label: str, res: dict, args) -> None:
    rows = [(k, v) for k, v in res.items() if isinstance(v, dict) and "ttft_ms" in v]
    base = res.get("baseline: generate() + unmerged PEFT")
    print(f"\n### {label}: {args.prompt_tokens}-token prompts, 24-48 new tokens, greedy, LoRA r=16 on 7 projections")
    print(
        "| configuration | requests | TTFT p50 / p95 / p99 ms | total p50 / p95 / p99 ms | tok/s per request "
        "| aggregate tok/s | baseline TTFT p50 / this |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, v in rows:
        ratio = f"{base['ttft_ms'][50] / v['ttft_ms'][50]:.2f}x" if base else "(baseline not run)"
        t, tt = v["ttft_ms"], v["total_ms"]
        print(
            f"| {k} | {v['requests']} ({v['errors']} failed) | {t[50]:.1f} / {t[95]:.1f} / {t[99]:.1f} | "
            f"{tt[50]:.0f} / {tt[95]:.0f} / {tt[99]:.0f} | {v['tok_s_per_client']:.1f} | "
            f"{v['tok_s_overall']:.1f} | {ratio} |"
        )
    for key, swap in res.items():
        if key.startswith("hot-swap"):
            print(
                f"\n{key}: {swap['promotions']} promotions during {swap['requests']} streamed requests: "
                f"{swap['failed_requests']} failed; engine paused p50 {swap['engine_pause_ms']['p50']:.1f} ms, "
                f"p95 {swap['engine_pause_ms']['p95']:.1f} ms, "
                f"max {swap['engine_pause_ms']['max']:.1f} ms per swap (set_live wall p50 "
                f"{swap['swap_wall_ms']['p50']:.1f} ms); "
                "TTFT p50/p95 during swaps "
                f"{swap['during_swaps']['ttft_ms'][50]:.1f}/{swap['during_swaps']['ttft_ms'][95]:.1f} ms; "
                f"adapters loaded after: {swap['loaded_after']}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(OUT, indent=1, default=str))
    sys.stdout.flush()


def compare(label: str, res: dict, args) -> None:
    """max_batch 1 (one sequence per step, the old engine) beside each larger max_batch, same load."""
    one = 1 if 1 in args.max_batch else None
    others = [mb for mb in args.max_batch if mb != 1]
    if one is None or not others:
        return
    print(
        f"\n### {label}: max_batch 1 vs batched, side by side (ratio = max_batch 1 / batched; >1 = batched better,"
        " for tok/s batched / max_batch 1)"
    )
    print(
        "| engine, load | max_batch | TTFT p50 / p95 ms | total p50 / p95 ms | aggregate tok/s | TTFT p95 ratio "
        "| total p50 ratio | tok/s ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in res:
        if ", max_batch 1, " not in key:
            continue
        a = res[key]
        for mb in others:
            b = res.get(key.replace(", max_batch 1, ", f", max_batch {mb}, "))
            if not b:
                continue
            where = key.replace(", max_batch 1", "").replace("engine, ", "")
            for m, v in ((1, a), (mb, b)):
                t, tt = v["ttft_ms"], v["total_ms"]
                ratios = (
                    (
                        f"{a['ttft_ms'][95] / t[95]:.2f}x | {a['total_ms'][50] / tt[50]:.2f}x | "
                        f"{v['tok_s_overall'] / a['tok_s_overall']:.2f}x"
                    )
                    if m != 1
                    else " | | "
                )
                print(
                    f"| {where} | {m} | {t[50]:.1f} / {t[95]:.1f} | {tt[50]:.0f} / {tt[95]:.0f} | "
                    f"{v['tok_s_overall']:.1f} | {ratios} |"
                )
    sys.stdout.flush()


# the targets (H200): 1-client decode tok/s, 32-token completion ms, 8-client TTFT p95 ms
TARGETS_BY_SHAPE = {"0.5b": (450, 120, 120), "7b": (190, 250, 120)}


def summary(label: str, res: dict, args) -> None:
    """Static KV + CUDA graphs beside the dynamic engine and plain generate(), against the issue's targets."""
    mb = args.max_batch[-1]
    names = [(kind, variant_name(True, mb, kind)) for kind in args.engines]
    shape = next((k for k in TARGETS_BY_SHAPE if f"-{k}-" in label), None)
    tgt = TARGETS_BY_SHAPE.get(shape, (None, None, None))

    def get(key, *path):
        v = res.get(key)
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        return v

    def fmt(v, spec=".0f"):
        return "-" if v is None else format(v, spec)

    cols = [k for k, _ in names] + ["generate() dynamic", "generate() static"]
    rows = [
        (
            "1 client decode tok/s",
            f">= {tgt[0]}" if tgt[0] else "",
            [get(f"{n}, 1 client, idle", "decode_tok_s") for _, n in names]
            + [get("generate() dynamic cache", "decode_tok_s"), get("generate() static cache", "decode_tok_s")],
        ),
        (
            f"{args.fixed_tokens}-token completion, 1 client, total p50 ms",
            f"<= {tgt[1]}" if tgt[1] else "",
            [get(f"{n}, 1 client, {args.fixed_tokens} tokens", "total_ms", 50) for _, n in names]
            + [get("generate() dynamic cache", "completion_32_ms"), get("generate() static cache", "completion_32_ms")],
        ),
        ("1 client TTFT p50 ms", "", [get(f"{n}, 1 client, idle", "ttft_ms", 50) for _, n in names] + [None, None]),
        ("8 clients TTFT p50 ms", "", [get(f"{n}, 8 clients, idle", "ttft_ms", 50) for _, n in names] + [None, None]),
        (
            "8 clients TTFT p95 ms",
            f"< {tgt[2]}" if tgt[2] else "",
            [get(f"{n}, 8 clients, idle", "ttft_ms", 95) for _, n in names] + [None, None],
        ),
        (
            "8 clients aggregate tok/s",
            "",
            [get(f"{n}, 8 clients, idle", "tok_s_overall") for _, n in names] + [None, None],
        ),
        (
            "8 clients while training TTFT p95 ms",
            "<= 1.5x idle",
            [get(f"{n}, 8 clients, training", "ttft_ms", 95) for _, n in names] + [None, None],
        ),
    ]
    print(f"\n### {label}: summary (max_batch {mb}, live adapter merged; `-` = not run)")
    print("| measure | target | " + " | ".join(cols) + " |")
    print("| --- | --- |" + " --- |" * len(cols))
    for title, target, values in rows:
        print(f"| {title} | {target} | " + " | ".join(fmt(v) for v in values) + " |")
    for key, v in res.items():
        if key.startswith("hot-swap"):
            print(
                f"{key}: {v['failed_requests']} failed of {v['requests']}, engine pause p95 "
                f"{v['engine_pause_ms']['p95']:.1f} ms (target: 0 failed, < 50 ms)"
            )
        elif ": start" in key:
            print(
                f"{key}: engine start {v['engine_start_s']:.2f} s, then warm-up (check + CUDA graph captures) "
                f"{v['warm_up_s']:.2f} s; cold start {v['cold_start_s']:.2f} s"
            )
        elif (key.endswith(": static decode") or key.endswith(": step anatomy")) and v:
            print(f"{key}: {json.dumps(v, default=str)}")
        elif key.endswith("8 clients, idle") and "submitted_ms_ttft_ms" in v:
            print(f"{key}: (submitted ms, TTFT ms) {v['submitted_ms_ttft_ms']}")
    sys.stdout.flush()


OUT: dict = {}
T0 = time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a local model folder (CPU runs: ../shared/models/gutenberg-qwen2-31m)")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="random-init Qwen2.5 shape(s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=16, help="requests at 1 client")
    parser.add_argument("--requests-per-client", type=int, default=3, help="requests per client at 8 clients")
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--no-training", action="store_true", help="skip the runs beside a training loop")
    parser.add_argument("--no-hot-swap", action="store_true", help="skip the hot-swap-under-load check")
    parser.add_argument("--only-merged", action="store_true", help="skip the baseline and the unmerged engine")
    parser.add_argument(
        "--max-batch",
        type=int,
        action="append",
        help="engine max_batch values to compare (default: 1 and 8; 1 = one sequence per step)",
    )
    parser.add_argument(
        "--engines",
        default=None,
        help="comma-separated engine kinds: dynamic (the KV cache grows per step), static (static "
        "KV + CUDA graphs), static+compile (the step torch.compiled, then captured); default: "
        "dynamic,static on cuda, dynamic on cpu",
    )
    parser.add_argument(
        "--generate-baselines",
        action="store_true",
        help="also time plain model.generate() with the dynamic and the static cache",
    )
    parser.add_argument("--generate-requests", type=int, default=5, help="requests per generate() baseline")
    parser.add_argument(
        "--fixed-tokens", type=int, default=32, help="1-client inline completions of exactly this many tokens (0: skip)"
    )
    parser.add_argument("--deadline", type=float, help="skip phases that would start after this many seconds")
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument("--train-loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_batch = args.max_batch or [1, 8]
    args.engines = (args.engines or ("dynamic,static" if args.device == "cuda" else "dynamic")).split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _bootstrap_imports()
    if args.train_loop:
        train_loop(args)
        return 0
    import torch

    print(
        f"torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else f", {torch.get_num_threads()} threads")
    )
    for shape in args.shape or [None]:
        bench_model(args, shape, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
