"""The tables of `train_throughput.py`: one Markdown line per loop (tokens/s, ratios, memory, MFU), and the parsing of
ours' config specs (`CKPT[:LEVER+LEVER][@ROWS]`)."""

from __future__ import annotations

import argparse

PEAK_FLOPS = {"cuda": 790e12, "cpu": None}


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
    NN% of their activations for backward: torch's partitioner budget), `fp32kbit` (4-bit: peft's k-bit preparation,
    the other weights cast to fp32; without it they keep bf16, the default since 2026-12-03). E.g. `1`,
    `0:compile+fused+keep50@8`, `1:fused+fp32kbit`."""
    spec, _, rows = value.partition("@")
    mode, _, levers = spec.partition(":")
    wanted = set(filter(None, levers.split("+")))
    keeps = [w for w in wanted if w.startswith("keep") and w[4:].isdigit()]
    if wanted - {"compile", "fused", "fp32kbit", *keeps} or len(keeps) > 1:
        raise argparse.ArgumentTypeError(f"{value}: levers are compile, fused, fp32kbit and one keepNN")
    fraction, elementwise = (1.0, False) if mode == "budget" else parse_ckpt(mode)
    return {
        "fraction": fraction,
        "elementwise": elementwise,
        "compile": "compile" in wanted,
        "fused": "fused" in wanted,
        "keep": int(keeps[0][4:]) / 100 if keeps else 1.0,
        "kbit_fp32": "fp32kbit" in wanted,
        "budget": mode == "budget",
        "rows": int(rows) if rows else None,
    }


def ours_label(label: str, r: dict) -> str:
    if "rows" not in r:  # the memory budget found nothing that fits
        return f"{label} {r.get('attention', '')}, memory budget {r.get('budget', 0) / 2**30:.1f} GiB"
    name = f"{label} {r['attention']}, {r['rows']} packed rows x {r['width']}, {ckpt_tag(r)}"
    if r.get("budget"):
        name += f" (memory budget {r['budget'] / 2**30:.1f} GiB)"
    return name + (f", {r['levers']}" if r.get("levers", "none") != "none" else "")


def fastest_within(limit: int | None, lines: list[tuple[str, dict]], what: str) -> str:
    """The fastest line of ours at or under `limit` bytes of peak memory (what the targets are judged on)."""
    fits = [
        (r["tokens_per_s"], line) for line, r in lines if r.get("tokens_per_s") and limit and r["peak_bytes"] <= limit
    ]
    if not fits:
        return f"fastest at or under {what}: none of ours fits"
    return f"fastest at or under {what}: {max(fits)[1]}"


def peer_variants(values: list[str]) -> list[tuple[str, bool]]:
    """`varlen`, `flex`, `sdpa`, each optionally `+liger` -> (attention, liger)."""
    return [(v.removesuffix("+liger"), v.endswith("+liger")) for v in values]
