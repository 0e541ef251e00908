"""Prompt-lookup (n-gram) drafting on real prose: how many drafted tokens would greedy verification accept?

Issue 12 asks for speculative decoding only if it pays on prose. This measures it before building it: for excerpts
of ../shared/corpora (a 1,000-token "manuscript" context each), the model's own greedy continuation is generated,
then prompt-lookup drafting is replayed against it: at each step the last n tokens (n = 3, 2, 1, longest first) are
looked up earlier in the context + text so far, and the k tokens that followed are the draft. Greedy verification
accepts exactly the draft's prefix that equals the greedy continuation, plus one token of its own, so the replay
is exact: no verifier needs to run.

    python benchmarks/prompt_lookup.py --model ../shared/models/gutenberg-qwen2-31m            # CPU, ~2 min

Figures: drafts per step, acceptance rate (accepted / drafted tokens), tokens per verify step (the speedup bound on
a GPU where a (k+1)-token verify step costs about one decode step), for k = 2, 4, 8.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def excerpts(corpora: Path, tokenizer, n: int, context: int, seed: int) -> list[list[int]]:
    """`n` token windows of `context` tokens from random places in the corpora's books."""
    rng = random.Random(seed)
    books = sorted(corpora.glob("*/*.txt"))
    out = []
    for i in range(n):
        text = books[i % len(books)].read_text(encoding="utf-8", errors="replace")
        start = rng.randrange(0, max(1, len(text) - 8 * context))
        ids = tokenizer.encode(text[start : start + 8 * context], add_special_tokens=False)
        out.append(ids[-context:])
    return out


def draft(seq: list[int], k: int, max_ngram: int = 3) -> list[int]:
    """The k tokens that followed the latest earlier occurrence of seq's last n tokens (longest n first)."""
    for n in range(max_ngram, 0, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n - 1, -1, -1):
            if seq[start : start + n] == tail:
                return seq[start + n : start + n + k]
    return []


def replay(context: list[int], greedy: list[int], k: int) -> dict:
    """Verify steps needed to produce `greedy` with prompt-lookup drafts of up to k tokens."""
    t = steps = drafted = accepted = with_draft = 0
    while t < len(greedy):
        d = draft(context + greedy[:t], k)
        ok = 0
        while ok < len(d) and t + ok < len(greedy) and d[ok] == greedy[t + ok]:
            ok += 1
        steps += 1
        drafted += len(d)
        accepted += ok
        with_draft += bool(d)
        t += ok + 1  # the verify step's own token
    return {"steps": steps, "drafted": drafted, "accepted": accepted, "with_draft": with_draft}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT.parent / "shared/models/gutenberg-qwen2-31m"))
    parser.add_argument("--corpora", default=str(ROOT.parent / "shared/corpora"))
    parser.add_argument("--excerpts", type=int, default=10)
    parser.add_argument("--context", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    t0 = time.perf_counter()
    runs = []
    with torch.inference_mode():
        for ids in excerpts(Path(args.corpora), tok, args.excerpts, args.context, seed=12):
            x = torch.tensor([ids])
            y = model.generate(
                x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
            runs.append((ids, y[0, len(ids) :].tolist()))
    print(
        f"{len(runs)} excerpts of {args.context} tokens from {args.corpora}, {args.new_tokens} greedy tokens each "
        f"({Path(args.model).name}, {time.perf_counter() - t0:.0f} s)"
    )
    print("| draft tokens k | steps with a draft | acceptance (accepted / drafted) | tokens per verify step |")
    print("| --- | --- | --- | --- |")
    for k in (2, 4, 8):
        tot = {"steps": 0, "drafted": 0, "accepted": 0, "with_draft": 0}
        for ids, greedy in runs:
            for key, v in replay(ids, greedy, k).items():
                tot[key] += v
        rate = tot["accepted"] / tot["drafted"] if tot["drafted"] else 0.0
        produced = len(runs) * args.new_tokens
        print(f"| {k} | {tot['with_draft'] / tot['steps']:.0%} | {rate:.1%} | {produced / tot['steps']:.2f} |")
    sample = tok.decode(runs[0][1])
    print(f"\nfirst continuation: {sample!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
