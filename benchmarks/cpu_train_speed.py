"""CPU training speed: Penwright's trainer against a plain PEFT loop on the same rows, side by side in one run.

    python benchmarks/cpu_train_speed.py [--manuscript FILE_OR_FOLDER] [--steps 6] [--rows 2] [--width 1024]

The manuscript (default: Northanger Abbey from ../shared/corpora) is curated with the default settings; the
training rows' tokens are then fed to:
- `plain`: the plain transformers + PEFT loop: the same tokens concatenated into windows of `--width`, no mask,
  `model(input_ids, labels=input_ids)` (loss on every token), AdamW, fp32; `plain-bf16`: the same under CPU
  autocast to bf16 (the strongest honest peer on a CPU with native bf16);
- `ours-<attention>`: Penwright's backend and optimizer step on the same samples packed into rows of `--width`
  (`causal`: plain causal attention over the row; `sdpa`: a block-diagonal mask from restarting positions),
  and `ours-unpacked` (one sample a row, padded, with a mask); precision is the trainer's default (bf16 autocast
  where the CPU has native bf16), `-fp32` forces fp32.
Each variant runs `--steps` steps of `--rows` rows, interleaved round by round so that other load on the machine
falls on all of them alike; tokens/s counts every token in the rows (padding excluded). The first step of each
variant is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BASE = SHARED / "models" / "gutenberg-qwen2-31m"


def curated_samples(manuscript: Path, tokenizer, width: int):
    from penwright.trainer import data as D
    from penwright.trainer.curate import curate
    from penwright.trainer.settings import CurationSettings

    out = Path(tempfile.mkdtemp(prefix="pw-speed-"))
    folder = manuscript if manuscript.is_dir() else manuscript.parent
    include = ["**/*"] if manuscript.is_dir() else [manuscript.name]
    curate([folder], include, [], None, CurationSettings(), tokenizer, out)
    samples, _ = D.encode_split(out / "train.jsonl", tokenizer, width)
    return samples


class Plain:
    def __init__(self, samples, width: int, rows: int, lr: float, bf16: bool = False):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        stream = [t for s in samples for t in s.input_ids]
        self.windows = [stream[i : i + width] for i in range(0, len(stream) - width, width)]
        model = AutoModelForCausalLM.from_pretrained(str(BASE), dtype=torch.float32)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        self.model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, lora_dropout=0.0))
        self.model.train()
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr)
        self.rows, self.i, self.bf16 = rows, 0, bf16
        self.name = "plain-bf16" if bf16 else "plain"

    def step(self) -> int:
        import contextlib

        import torch

        batch = torch.tensor([self.windows[(self.i + k) % len(self.windows)] for k in range(self.rows)])
        self.i += self.rows
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with cast:
            loss = self.model(input_ids=batch, labels=batch).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return batch.numel()


class Ours:
    def __init__(
        self, samples, width: int, rows: int, lr: float, attention: str, packing: bool = True, precision: str = "auto"
    ):
        from penwright.trainer import data as D
        from penwright.trainer.backends.torch_backend import TorchBackend
        from penwright.trainer.settings import ModelSettings, TrainingSettings
        from penwright.trainer.train import make_optimizer

        self.name = (f"ours-{attention}" if packing else "ours-unpacked") + ("-fp32" if precision == "fp32" else "")
        self.s = TrainingSettings(
            rank=16,
            alpha=32,
            dropout=0.0,
            targets="attn_mlp",
            learning_rate=lr,
            batch_size=rows,
            packing=packing,
            attention=attention,
            max_seq_length=width,
            precision=precision,
        )
        self.backend = TorchBackend(str(BASE), self.s, ModelSettings(), "cpu").load()
        self.backend.model.train()
        self.rows_all = D.make_rows(samples, width, packing)
        self.opt = make_optimizer(self.backend.trainable_parameters(), self.s, "cpu")
        self.rows, self.i = rows, 0

    def step(self) -> int:
        from penwright.trainer.train import optimizer_step

        picked = [self.rows_all[(self.i + k) % len(self.rows_all)] for k in range(self.rows)]
        self.i += self.rows
        optimizer_step(self.backend, self.opt, [self.backend.collate(picked)], self.s)
        return sum(len(r.input_ids) for r in picked)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manuscript", type=Path, default=SHARED / "corpora" / "austen" / "northanger_abbey.txt")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--variants", default="plain,plain-bf16,ours-causal,ours-causal-fp32,ours-sdpa,ours-unpacked")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(BASE))
    samples = curated_samples(args.manuscript, tokenizer, args.width)
    lr = 1e-4
    make = {
        "plain": lambda: Plain(samples, args.width, args.rows, lr),
        "plain-bf16": lambda: Plain(samples, args.width, args.rows, lr, bf16=True),
        "ours-causal": lambda: Ours(samples, args.width, args.rows, lr, "causal"),
        "ours-causal-fp32": lambda: Ours(samples, args.width, args.rows, lr, "causal", precision="fp32"),
        "ours-sdpa": lambda: Ours(samples, args.width, args.rows, lr, "sdpa"),
        "ours-unpacked": lambda: Ours(samples, args.width, args.rows, lr, "sdpa", packing=False),
    }
    runners = [make[v]() for v in args.variants.split(",")]
    for r in runners:
        r.step()  # warm-up
    totals = {r.name: [0, 0.0] for r in runners}
    for _ in range(args.steps):
        for r in runners:
            t0 = time.perf_counter()
            n = r.step()
            totals[r.name][0] += n
            totals[r.name][1] += time.perf_counter() - t0
    plain = totals.get("plain")
    base = plain[0] / plain[1] if plain else None
    print(
        f"{len(samples)} samples; {args.steps} steps x {args.rows} rows x {args.width} tokens; "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'loop':<15} {'tokens/s':>9} {'vs plain':>9}")
    figures = {}
    for name, (tokens, seconds) in totals.items():
        tps = tokens / seconds
        figures[name] = round(tps, 1)
        ratio = f"{tps / base:.2f}x" if base else "-"
        print(f"{name:<15} {tps:>9.1f} {ratio:>9}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"manuscript": str(args.manuscript)}, "tokens_per_s": figures},
                default=str,
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
