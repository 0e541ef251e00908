"""Which one-pass setting teaches the voice best: the fast preset's recipe in plain torch, many settings, one model.

    # here: the rows the trainer would read, from the projects `benchmarks/quality.py --out DIR` left
    .venv/bin/python benchmarks/voice_sweep.py prep --quality DIR --model ../shared/models/gutenberg-qwen2-31m
    # there (a GPU; carry .voice-sweep, git-ignored) or here: the settings of a JSON list, in turn
    python3 benchmarks/voice_sweep.py run --configs .voice-sweep/configs.json [--budget 150]

`prep` encodes each author's curated `train.jsonl` exactly as `penwright train` does (`trainer.data.encode_row`, then
`pack` into rows of 1,024), plus the manuscript as raw 1,024-token windows (`raw1024`), the held-out book's and the
control book's 12 evenly spread 512-token windows (as `penwright eval` picks them), and the 31M base's weights,
compressed, so the device needs nothing but torch and transformers. `run` trains a LoRA per setting (AdamW, warmup
+ cosine to 0.1, clip 1.0, bf16 autocast, plain causal attention over packed rows: the CPU trainer's recipe), prints
held-out perplexity against the base for the author and the control, and the voice margin. A setting is a dict:
author, data (`rows` | `raw1024`), r, alpha, lr, bs, and optionally epochs, dropout, wd, neft (NEFTune alpha), targets
(`attn_mlp` | `attn`, `+head` for the output projection too), eval_every (held-out perplexity during training). Results:
benchmarks/quality_results.md.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import os
import pickle
import random
import shutil
import sys
import time
from pathlib import Path

HERE = Path(".voice-sweep")
ATTN, MLP = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")


def prep(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from transformers import AutoTokenizer

    from penwright.trainer import data as D
    from penwright.trainer.evaluate.model import perplexity_windows
    from penwright.trainer.evaluate.voice import VoiceInputs, unwrap

    tok = AutoTokenizer.from_pretrained(args.model)
    ids = lambda text: tok(text, add_special_tokens=False, verbose=False).input_ids  # noqa: E731

    def windows(name: str) -> list[list[int]]:  # as `penwright eval` scores them
        text = unwrap((args.quality / name).read_text())
        return perplexity_windows(tok, [text], VoiceInputs.ppl_tokens, VoiceInputs.ppl_windows)

    out = {}
    for author in args.authors.split(","):
        project = args.quality / author
        rows = D.read_rows(project / ".penwright/datasets/current/train.jsonl")
        samples = [D.encode_row(tok, r, 1024, True)[0] for r in rows]
        raw = []
        for f in sorted((project / "manuscript").glob("*.txt")):
            t = ids(unwrap(f.read_text()))
            raw += [(t[i : i + 1024], t[i + 1 : i + 1024] + [D.IGNORE]) for i in range(0, len(t) - 32, 1024)]
        out[author] = {
            "variants": {"rows": [(r.input_ids, r.labels) for r in D.pack(samples, 1024)], "raw1024": raw},
            "own": windows(f"{author}-heldout.txt"),
            "control": windows(f"{author}-control.txt"),
        }
    HERE.mkdir(exist_ok=True)
    (HERE / "data.pkl.xz").write_bytes(lzma.compress(pickle.dumps(out)))
    (HERE / "model.safetensors.xz").write_bytes(lzma.compress((args.model / "model.safetensors").read_bytes()))
    shutil.copy(args.model / "config.json", HERE / "config.json")
    print({a: {k: len(v) for k, v in d["variants"].items()} for a, d in out.items()}, "->", HERE)


def load_base(dev: str):
    import torch
    from safetensors.torch import load
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(HERE), dtype=torch.float32)
    weights = load(lzma.decompress((HERE / "model.safetensors.xz").read_bytes()))
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    model.tie_weights()
    return model.to(dev).eval()


def lora_class():
    import torch
    from torch import nn

    class LoRA(nn.Module):
        def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float):
            super().__init__()
            self.base, self.scale, self.drop = base, alpha / r, nn.Dropout(dropout)
            self.A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))

        def forward(self, x):
            return self.base(x) + (self.drop(x) @ self.A.t() @ self.B.t()) * self.scale

    return LoRA


def add_lora(model, c: dict) -> list:
    targets = c.get("targets", "attn_mlp")
    LoRA, names = lora_class(), ATTN + (MLP if targets.startswith("attn_mlp") else ())
    for p in model.parameters():
        p.requires_grad_(False)
    added = []
    if targets.endswith("+head"):  # the output projection too (tied to the embeddings: LoRA adds to the head only)
        model.lm_head = LoRA(model.lm_head, c["r"], c["alpha"], c.get("dropout", 0.0))
        added.append(model.lm_head)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in names:
                if hasattr(parent, name):
                    added.append(LoRA(getattr(parent, name), c["r"], c["alpha"], c.get("dropout", 0.0)))
                    setattr(parent, name, added[-1])
    return added


def remove_lora(model) -> None:
    if hasattr(model.lm_head, "base"):
        model.lm_head = model.lm_head.base
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in ATTN + MLP:
                if hasattr(getattr(parent, name, None), "base"):
                    setattr(parent, name, getattr(parent, name).base)


def schedule(step: int, total: int, warm: int) -> float:
    if step < warm:
        return (step + 1) / (warm + 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def train(model, rows: list, c: dict, own: list, dev: str) -> dict:
    import torch
    import torch.nn.functional as F

    params = [p for m in add_lora(model, c) for p in (m.A, m.B)]
    opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c.get("wd", 0.0))
    per_epoch = math.ceil(len(rows) / c["bs"])
    total = math.ceil(c.get("epochs", 1) * per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule(s, total, min(4, total // 2)))
    model.train()
    trajectory, t0 = [], time.time()
    for step in range(total):
        epoch, pos = divmod(step, per_epoch)
        order = list(range(len(rows)))
        random.Random(epoch).shuffle(order)
        batch = [rows[i] for i in order[pos * c["bs"] : (pos + 1) * c["bs"]]]
        ids, labels = collate(batch, dev)
        with torch.autocast(dev, dtype=torch.bfloat16):
            emb = model.model.embed_tokens(ids)
            if c.get("neft"):  # NEFTune: uniform noise on the input embeddings, alpha / sqrt(L d)
                mag = c["neft"] / math.sqrt(emb.shape[1] * emb.shape[2])
                emb = emb + torch.empty_like(emb).uniform_(-mag, mag)
            hidden = model.model(inputs_embeds=emb).last_hidden_state
        keep = labels.reshape(-1) != -100
        h = hidden.reshape(-1, hidden.shape[-1])[keep].float()
        loss = F.cross_entropy(model.lm_head(h), labels.reshape(-1)[keep])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(), opt.zero_grad(set_to_none=True), sched.step()
        if c.get("eval_every") and (step + 1) % c["eval_every"] == 0:
            model.eval()
            trajectory.append((step + 1, round(perplexity(model, own, dev), 3)))
            model.train()
    model.eval()
    return {"steps": total, "train_s": round(time.time() - t0, 1), "trajectory": trajectory}


def collate(batch: list, dev: str):
    import torch

    width = max(len(x) for x, _ in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), torch.tensor(y)
    return ids.to(dev), labels.to(dev)


def perplexity(model, wins: list, dev: str) -> float:
    import torch
    import torch.nn.functional as F

    total = n = 0
    with torch.no_grad():
        for w in wins:
            x = torch.tensor([w], device=dev)
            with torch.autocast(dev, dtype=torch.bfloat16):
                logits = model(input_ids=x).logits[0].float()
            total += F.cross_entropy(logits[:-1], x[0, 1:], reduction="sum").item()
            n += len(w) - 1
    return math.exp(total / n)


def run(args) -> None:
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    data = pickle.loads(lzma.decompress((HERE / "data.pkl.xz").read_bytes()))
    configs = json.loads(args.configs.read_text())
    model, t_start, results = load_base(dev), time.time(), []
    base = {
        a: {k: perplexity(model, data[a][k], dev) for k in ("own", "control")} for a in {c["author"] for c in configs}
    }
    print("base:", {a: {k: round(v, 3) for k, v in b.items()} for a, b in base.items()}, flush=True)
    print("| setting | author | steps | own x base | control x base | voice margin | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in configs:
        if time.time() - t_start > args.budget:
            print(f"budget spent: stopped before {c['name']}")
            break
        d = data[c["author"]]
        info = train(model, d["variants"][c.get("data", "rows")], c, d["own"], dev)
        own, ctl = (perplexity(model, d[k], dev) / base[c["author"]][k] for k in ("own", "control"))
        remove_lora(model)
        results.append({**c, **info, "own_ratio": round(own, 4), "control_ratio": round(ctl, 4)})
        print(
            f"| {c['name']} | {c['author']} | {info['steps']} | {own:.3f} | {ctl:.3f} | {ctl - own:+.3f} | "
            f"{info['train_s']} |",
            flush=True,
        )
        if info["trajectory"]:
            print(f"  held-out perplexity by step: {info['trajectory']}", flush=True)
        out = Path(os.environ.get("OUT", HERE))
        (out / "voice_sweep.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prep")
    p.add_argument("--quality", type=Path, required=True, help="a `benchmarks/quality.py --out` folder")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--authors", default="austen,doyle")
    r = sub.add_parser("run")
    r.add_argument("--configs", type=Path, required=True, help="a JSON list of settings")
    r.add_argument("--budget", type=float, default=float("inf"), help="seconds; no new setting starts after them")
    args = ap.parse_args()
    prep(args) if args.verb == "prep" else run(args)


if __name__ == "__main__":
    main()
