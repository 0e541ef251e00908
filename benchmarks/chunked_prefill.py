"""Chunked prefill: how long a running stream waits while a long prompt is prefilled, and that prompt's TTFT.

One stream decodes (greedy, a 200-token prompt); after its 10th token a 3,500-token prompt arrives. Reported per
setting of the engine's `prefill_chunk` (0 = off: one prefill pass, the engine before chunking), alternating
settings in one process and one engine: the longest gap between the running stream's consecutive tokens from the
long prompt's arrival to its first token, the running stream's median gap before it arrived (one decode step), the
tokens the stream got meanwhile, and the long request's TTFT. Token times are taken on the engine thread (each
request's stop_check runs there as its token is sent).

    nice -n 19 python benchmarks/chunked_prefill.py --model ../shared/models/gutenberg-qwen2-31m     # CPU
    python benchmarks/chunked_prefill.py --shape 0.5b --shape 7b --device cuda --threads 0        # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import ROOT, SHAPES, _bootstrap_imports, build_model  # noqa: E402


def long_prompts(tokenizer, n: int, length: int, vocab: int) -> list[list[int]]:
    """`n` different prompts of `length` tokens: real prose from ../shared/corpora when the tokenizer has words for
    it, else random ids (random-init shapes)."""
    import random

    texts = sorted((ROOT.parent / "shared" / "corpora").rglob("*.txt"))
    ids = tokenizer.encode(texts[0].read_text(errors="ignore")[:2_000_000]) if texts and vocab > 5000 else []
    rng = random.Random(0)
    if len(ids) < length * (n + 1) or len(set(ids[:1000])) < 50:
        return [[rng.randrange(vocab - 1) for _ in range(length)] for _ in range(n)]
    return [ids[(i + 1) * length : (i + 2) * length] for i in range(n)]


def one_run(engine, running: list[int], long: list[int], decode_tokens: int) -> dict:
    from penwright.server.engine import BASE, GenerationRequest, SamplingParams

    times: list[float] = []
    first: list[float] = []
    sent: list[float] = []

    def arrive() -> None:
        sent.append(time.perf_counter())
        late.append(engine.submit(GenerationRequest(long, SamplingParams(max_tokens=4), adapter=BASE, stop_check=mark)))

    def tick(_text: str):
        times.append(time.perf_counter())
        if len(times) == 10:
            arrive()

    def mark(_text: str):
        first.append(time.perf_counter())
        if len(first) == 3:
            stream.cancel()  # the figures are in (the gap around the first token too): the stream stops

    late: list = []
    stream = engine.submit(
        GenerationRequest(running, SamplingParams(max_tokens=decode_tokens), adapter=BASE, stop_check=tick)
    )
    outlived = stream.text(600)[1].finish_reason == "cancelled"
    late[0].text(600)
    t0, t1 = sent[0], first[0]
    during = [t for t in times if t0 <= t <= t1]
    gaps = [b - a for a, b in zip(times, times[1:]) if b > t0 and a < t1]  # every gap overlapping the prefill
    before = [b - a for a, b in zip(times[:10], times[1:10])]
    return {
        "ttft_ms": (t1 - t0) * 1000,
        "longest_gap_ms": max(gaps) * 1000 if gaps else float("nan"),
        "step_ms": statistics.median(before) * 1000,
        "stream_tokens_during": len(during),
        "stream_outlived_prefill": outlived,
    }


def bench(args, shape: str | None) -> list[dict]:
    import torch

    from penwright.server.engine import Engine
    from penwright.server.engine.torch_backend import TorchBackend

    model, tok, label = build_model(args, shape)
    engine = Engine(TorchBackend(label, preloaded=(model, tok)), max_batch=8).start(timeout=600)
    if args.threads:
        engine.call(lambda: torch.set_num_threads(args.threads))
    engine.warm_up()
    vocab = SHAPES[shape]["vocab_size"] if shape else len(tok)
    longs = long_prompts(tok, args.repeats * len(args.chunk) + 1, args.prompt_tokens, vocab)
    running = longs.pop()[:200]
    rows = []
    try:
        one_run(engine, running, longs[0][: args.prompt_tokens // 4], 40)  # warm-up: first-use costs
        for rep in range(args.repeats):
            for chunk in args.chunk:
                engine.call(lambda c=chunk: setattr(engine, "prefill_chunk", c or engine.context_length + 1))
                res = one_run(engine, running, longs.pop(), args.decode_tokens)
                rows.append({"model": label, "prefill_chunk": chunk, "repeat": rep, **res})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        engine.stop()
    return rows


def report(rows: list[dict]) -> None:
    print(
        "\n| model | prefill_chunk | TTFT ms, median (runs) | longest gap ms, median (max) | decode step ms "
        "| stream tokens during |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for model in dict.fromkeys(r["model"] for r in rows):
        for chunk in dict.fromkeys(r["prefill_chunk"] for r in rows):
            rs = [r for r in rows if r["model"] == model and r["prefill_chunk"] == chunk]
            ttft = [round(r["ttft_ms"]) for r in rs]
            gaps = [r["longest_gap_ms"] for r in rs]
            step = statistics.median(r["step_ms"] for r in rs)
            print(
                f"| {model} | {chunk or 'off'} | {statistics.median(ttft):.0f} ({', '.join(map(str, ttft))}) "
                f"| {statistics.median(gaps):.0f} ({max(gaps):.0f}) | {step:.0f} "
                f"| {statistics.median(r['stream_tokens_during'] for r in rs):.0f} |"
            )
    if not all(r["stream_outlived_prefill"] for r in rows):
        print("note: the running stream ended before a long prompt's first token in some runs (raise --decode-tokens)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a local model folder (CPU: ../shared/models/gutenberg-qwen2-31m)")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="random-init Qwen2.5 shape(s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, action="append", help="prefill_chunk settings; 0 = off (default 0, 512)")
    parser.add_argument("--prompt-tokens", type=int, default=3500)
    parser.add_argument("--decode-tokens", type=int, default=2000, help="the running stream's max_tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="the engine's intra-op threads (0 = torch's default)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args()
    args.chunk = args.chunk or [0, 512]
    if not args.model and not args.shape:
        parser.error("give --model or --shape")
    _bootstrap_imports()
    rows = []
    for shape in args.shape or [None]:
        rows += bench(args, shape)
    report(rows)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
