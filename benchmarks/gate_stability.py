"""Is the promotion gate's decision stable? The same candidate, measured with several sampling seeds.

    .venv/bin/python benchmarks/gate_stability.py --project DIR [--seeds 0,1,2] [--samples 8,16]

DIR is a project with a curated dataset and an adapter (e.g. one `benchmarks/quality.py --out` left behind). For each
sample count and seed, the gate's measures (`trainer.evaluate.voice`, as the daemon's training child takes them) of
the base and the newest adapter, the decision against the base, and the time the measures took. Same seed twice
gives the same figures (tests/trainer/test_evaluate_voice.py); this shows what another seed changes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--samples", default="8,16")
    args = ap.parse_args(argv)
    from peft import PeftModel

    from penwright.trainer.evaluate.gate import gate_voice_metrics, voice_decision
    from penwright.trainer.evaluate.model import load_model
    from penwright.trainer.evaluate.voice import compare, inputs_from_dataset
    from penwright.trainer.registry import Registry

    state = args.project / ".penwright"
    adapter = Registry(state / "penwright.db", state / "adapters").latest()
    model, tok = load_model(adapter.base_model, None, "cpu")
    model = PeftModel.from_pretrained(model, str(adapter.path))
    model.eval()
    print(f"v{adapter.version} against the base; held-out passages and the shipped control")
    print(
        f"{'samples':>7} {'seed':>4} {'own x':>7} {'ctl x':>7} {'margin':>7} {'Delta':>15} {'decision':>9} "
        f"{'seconds':>8}"
    )
    for n in (int(x) for x in args.samples.split(",")):
        for seed in (int(x) for x in args.seeds.split(",")):
            inputs, _ = inputs_from_dataset(state / "datasets" / "current", n_samples=n, seed=seed)
            t0 = time.perf_counter()
            cand = gate_voice_metrics(model, tok, inputs)
            with model.disable_adapter():
                base = gate_voice_metrics(model, tok, inputs)
            seconds = time.perf_counter() - t0
            cand["voice"], base["voice"] = compare(cand, base), compare(base, base)
            ok, _ = voice_decision(cand, base, 0.02)
            v = cand["voice"]
            delta = f"{base['delta'].get('delta_author', '-')}->{cand['delta'].get('delta_author', '-')}"
            print(
                f"{n:>7} {seed:>4} {v['own_ratio']:>7.3f} {v['control_ratio']:>7.3f} {v['voice_margin']:>+7.3f} "
                f"{delta:>15} {'promote' if ok else 'reject':>9} {seconds:>8.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
