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
Beside this file: `train_throughput_loops.py` (the loops a child process runs, the data, the models),
`train_throughput_report.py` (table lines, config specs), `train_throughput_held.py` (--held, --make-lengths),
`train_peer.py` (TRL's peer).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules beside this file (PYTHONSAFEPATH leaves it off)

from train_throughput_held import held_per_layer, make_lengths  # noqa: E402
from train_throughput_loops import LENGTHS, SHAPES, build_model, child, n_params  # noqa: E402
from train_throughput_report import (  # noqa: E402
    fastest_within,
    ours_label,
    parse_ckpt,
    parse_ours,
    peer_variants,
    report,
)

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
DEFAULT_OURS_NF4 = [
    "1:fp32kbit",
    "1",
    "budget:fused",
]  # 7b in 4-bit (no compilation: bitsandbytes layers); fp32kbit: peft's fp32 cast, the default until 2026-12-03


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


def ours_lines(
    shape: str, label: str, job: dict, n: int, device: str, base: dict, peer: dict | None, timeout: float
) -> list[tuple[str, dict]]:
    out = in_fresh_process(job, timeout)
    if "failed" in out:
        return [(report(shape, f"{label} {job['attention']}", out, n, device, base), out)]
    return [(report(shape, ours_label(label, r), r, n, device, base, peer), r) for r in out["results"]]


class Deadline:
    """The whole run's time limit: each loop gets what is left, and a loop is skipped under `reserve` seconds."""

    def __init__(self, seconds: float | None):
        self.end = time.monotonic() + seconds if seconds else None

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def allows(self, reserve: float) -> bool:
        return self.end is None or self.left() >= reserve


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
    for kbit_fp32 in (True, False):  # the k-bit preparation is chosen at load: a process for each
        group = [c for c in specs if c["kbit_fp32"] == kbit_fp32]
        job = {
            **common,
            "loop": "ours",
            "quantization": "4bit",
            "attention": args.attention[-1],
            "kbit_fp32": kbit_fp32,
            "configs": ours_configs(group, rows, int(args.nf4_budget * 2**30)),
        }
        if group and clock.allows(args.reserve):
            out += ours_lines(shape, "penwright QLoRA nf4", job, n, device, base, peer, clock.left())
            print("\n".join(line for line, _ in out[-len(group) :]), flush=True)
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
