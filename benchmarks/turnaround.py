"""Save-to-live turnaround of the real daemon, per stage, and completion latency while a job trains.

    .venv/bin/python benchmarks/turnaround.py                      # 31M base, 20,000-word manuscript, CPU
    .venv/bin/python benchmarks/turnaround.py --words 100000 --base /path/to/model --steps 30   # e.g. on a GPU
    python3 benchmarks/turnaround.py --shape 0.5b --words 100000 --steps 30   # random-init Qwen2.5-0.5B shape
    benchmarks/device/turnaround.sh fetch|run|local                            # the GPU run, set up offline

Builds a temp project from a public-domain corpus (../shared/corpora), starts `penwright serve` on it,
lets the first adapter train (cold start), then appends a new passage to a chapter (the author saves) and
times each stage from the events: debounce (save -> curation starts), curate, wait (scheduler idle wait +
child start), train, gate (held-out eval of candidate and live), publish + swap, first completion from the
new version. Completion latency (inline-completion shaped: ~`--prompt-tokens` prompt, 24 new tokens) is
measured idle and while the job trains, side by side. Prints figures; asserts nothing.

`--shape 0.5b` builds a random-init (seeded) model of Qwen2.5-0.5B's shape, its 151,936-row embedding
included, with the tokenizer of `--tokenizer` (16k tokens; the rows past it are never used): the compute
per token of the real model, no download. `--shape small` is a seconds-long CPU check of the same flow.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]  # daemon_proc, and pwtest it imports
SHARED = REPO.parent / "shared"
# Qwen2.5-0.5B's published shape; "small" runs the same flow on a CPU in seconds
SHAPES = {
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1e6,
    ),
    "small": dict(
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=16384,
        max_position_embeddings=4096,
        rope_theta=1e4,
    ),
}

from daemon_proc import DaemonProcess  # noqa: E402


def manuscript_words(corpus: Path, words: int, skip: int = 2000) -> tuple[list[str], str]:
    """`words` words of the corpus split into ~5,000-word chapters, plus a later passage to add as an edit."""
    text = " ".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(corpus.glob("*.txt")))
    paras = [p.strip().replace("\n", " ") for p in text.split("\n\n") if len(p.split()) > 20]
    count, i = 0, 0
    while count < skip and i < len(paras):  # past the front matter
        count += len(paras[i].split())
        i += 1
    count = 0
    chapters, current = [], []
    while count < words and i < len(paras):
        current.append(paras[i])
        count += len(paras[i].split())
        if sum(len(p.split()) for p in current) >= 5000:
            chapters.append("\n\n".join(current))
            current = []
        i += 1
    if current:
        chapters.append("\n\n".join(current))
    edit = "\n\n".join(paras[i + 50 : i + 50 + 30])
    return chapters, edit


def build_shape(shape: str, tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    """A random-init (seeded) Qwen2 of SHAPES[shape] in bf16 with `tokenizer_dir`'s tokenizer, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(
        **SHAPES[shape],
        tie_word_embeddings=True,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # 0.5B inits in a second on a GPU
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(
        f"built {shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters (random init, seed {seed})"
    )
    return out


def make_project(
    root: Path,
    chapters: list[str],
    base: str,
    steps: int,
    min_new_words: int,
    model_extra: str = "",
    gate_margin: float = 0.5,
    defaults: bool = False,
    compile_choice: str = "auto",
) -> Path:
    (root / "manuscript").mkdir(parents=True)
    for n, ch in enumerate(chapters, 1):
        (root / "manuscript" / f"{n:02d}.txt").write_text(ch + "\n")
    if defaults:  # every curation, training and gate setting at its default: what a new author gets
        (root / "penwright.yaml").write_text(f"""title: turnaround benchmark
manuscript: {{folders: [manuscript]}}
lore: {{enabled: false}}
model: {{base: "{base}"{model_extra}}}
retrain: {{min_new_words: {min_new_words}, idle_seconds: 0, max_per_hour: 60}}
watch: {{quiet_seconds: 2.0}}
""")
        if compile_choice != "auto":
            with open(root / "penwright.yaml", "a", encoding="utf-8") as fh:
                fh.write(f"training: {{overrides: {{compile: {compile_choice}}}}}\n")
        return root
    (root / "penwright.yaml").write_text(f"""title: turnaround benchmark
manuscript: {{folders: [manuscript]}}
lore: {{enabled: false}}
model: {{base: "{base}", max_context_tokens: 1024{model_extra}}}
curation: {{target_tokens: 400, max_tokens: 600, pair_types: [continuation, fim]}}
training:
  preset: fast
  overrides: {{max_steps: {steps}, eval_every: {steps}, save_every: {steps}, warmup_steps: 1, batch_size: 2,
              max_seq_length: 512, plateau_patience: null, eval_max_rows: 16, compile: {compile_choice}}}
retrain: {{min_new_words: {min_new_words}, idle_seconds: 0, max_per_hour: 60, gate_margin: {gate_margin}}}
watch: {{quiet_seconds: 2.0}}
""")
    return root


def completion_latencies(url: str, prompt: str, n: int, stop: threading.Event | None = None) -> list[float]:
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=120) as c:
        for _ in range(n):
            if stop is not None and stop.is_set():
                break
            t0 = time.perf_counter()
            r = c.post(
                "/v1/completions", json={"model": "penwright", "prompt": prompt, "max_tokens": 24, "temperature": 0}
            )
            r.raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def wait_version(d: DaemonProcess, version: int, timeout: float = 60) -> float:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = httpx.post(
            d.url + "/v1/completions", json={"model": "penwright", "prompt": "The", "max_tokens": 1}, timeout=60
        )
        if r.headers.get("X-Penwright-Adapter") == f"penwright@v{version}":
            return time.time()
        time.sleep(0.05)
    raise SystemExit(f"v{version} never answered")


class Clock:
    """One deadline for the whole run, so a stuck stage fails with the daemon's log instead of a silent kill."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        return max(1.0, min(cap, self.end - time.monotonic()))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=20000)
    ap.add_argument("--corpus", default=str(SHARED / "corpora" / "austen"))
    ap.add_argument("--base", default=str(SHARED / "models" / "gutenberg-qwen2-31m"))
    ap.add_argument("--shape", choices=sorted(SHAPES), help="build a random-init base of this shape instead of --base")
    ap.add_argument("--tokenizer", default=str(SHARED / "models" / "gutenberg-qwen2-31m"), help="tokenizer for --shape")
    ap.add_argument("--dtype", default="auto", help="model.dtype of the project (auto: bf16 on CUDA)")
    ap.add_argument("--backend", default="auto", help="model.backend of the project")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gate-margin", type=float, default=0.5)
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=3600, help="seconds for the whole run")
    ap.add_argument("--json-out", help="write the figures (and the daemon log next to it) here")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--train-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="training.compile of the project (CUDA: compile each decoder layer; auto decides by planned tokens)",
    )
    ap.add_argument(
        "--defaults",
        action="store_true",
        help="the project keeps every curation, training and gate default (--steps, --gate-margin unused)",
    )
    return ap.parse_args()


def cold_start(d: DaemonProcess, t_start: float, clock: Clock, random_init: bool) -> dict:
    """Daemon up, first curation, first job through the gate (promoted or not). On a random-init base (`--shape`)
    the gate's voice rules judge noise (its first adapter "improves" the control as much as the manuscript), so a
    rejected first adapter is promoted by hand: the edit's retrain is then gated against a live adapter, as an
    author's second save is, and the save-to-live is timed through the same gate work."""
    ready = d.wait_event(lambda e: e["type"] == "daemon.ready", clock.left(600))
    gate = d.wait_event(lambda e: e["type"] == "gate", clock.left(3600))
    out = {"ready_s": round(ready["time"] - t_start, 2), "first_gate": gate["decision"], "first_reason": gate["reason"]}
    if gate["decision"] != "promote" and random_init:
        promote_by_hand(d, gate["version"])
        out["first_promoted_by_hand"] = True
    if gate["decision"] == "promote" or random_init:
        first = d.wait_event(lambda e: e["type"] == "adapter.swapped", clock.left(600), gate["id"])
        out["first_live_s"] = round(first["time"] - t_start, 2)
    print(
        f"cold start: daemon up + first curation {out['ready_s']:.1f}s; first adapter {gate['decision'].rstrip('e')}ed "
        f"({gate['reason']}) {out.get('first_live_s', gate['time'] - t_start):.1f}s after start"
    )
    return out


def promote_by_hand(d: DaemonProcess, version: int) -> None:
    import httpx

    r = httpx.post(f"{d.url}/api/adapters/{version}/promote", json={}, timeout=120)
    r.raise_for_status()
    print(f"adapter v{version} promoted by hand (random-init base: nothing for the voice rules to judge)")


def turnaround(d: DaemonProcess, project: Path, edit: str, prompt: str, args, clock: Clock) -> dict:
    """Save an edit; time each stage from the events; completions while the job trains."""
    mark = d.last_id
    t_save = time.time()
    with open(project / "manuscript" / "02.txt", "a", encoding="utf-8") as fh:
        fh.write("\n\n" + edit + "\n")
    curate = d.wait_event(lambda e: e["type"] == "curate" and e.get("files"), clock.left(600), mark)
    started = d.wait_event(lambda e: e["type"] == "job.started", clock.left(600), curate["id"])
    job = started["job_id"]
    d.wait_event(
        lambda e: e["type"] == "job.progress" and e.get("job_id") == job and e.get("step"),
        clock.left(3600),
        started["id"],
    )
    stop = threading.Event()
    during: list[float] = []
    t = threading.Thread(target=lambda: during.extend(completion_latencies(d.url, prompt, args.requests, stop)))
    t.start()
    try:
        finished = d.wait_event(
            lambda e: e["type"] in ("job.finished", "job.failed") and e.get("job_id") == job, clock.left(3600), mark
        )
    finally:
        stop.set()
        t.join()
    if finished["type"] == "job.failed":
        raise SystemExit(f"job failed: {finished['error']}")
    gate = d.wait_event(lambda e: e["type"] == "gate" and e.get("job_id") == job, clock.left(600), mark)
    print(f"gate: {gate['decision']} - {gate['reason']}")
    timings = finished.get("timings") or {}
    child = child_breakdown(project, finished.get("run_id"))
    stages = [
        ("debounce (save -> curation starts)", curate["time"] - curate["seconds"] - t_save),
        ("curate (changed file, incremental)", curate["seconds"]),
        ("schedule (curated -> job started)", started["time"] - curate["time"]),
        (f"child start (standby: {timings.get('standby')})", timings.get("child_start_s", float("nan"))),
        ("train (child: load + steps + save)", timings.get("train_s", float("nan"))),
        *child,
        ("gate (eval candidate + live)", timings.get("gate_eval_s", float("nan"))),
        *gate_split(gate),
        ("child exit (after its result)", timings.get("child_exit_s", float("nan"))),
    ]
    out = {"during": during, "promoted": gate["decision"] == "promote", "gate_reason": gate["reason"], "t_save": t_save}
    out["decided_s"] = gate["time"] - t_save
    if not out["promoted"] and args.shape:  # random-init: the guards judge noise; the decision's time is what counts
        promote_by_hand(d, gate["version"])
        out["by_hand"] = True
    if out["promoted"] or out.get("by_hand"):
        swapped = d.wait_event(
            lambda e: e["type"] == "adapter.swapped" and e["version"] == gate["version"], clock.left(600), mark
        )
        t_live = wait_version(d, gate["version"], clock.left(60))
        stages += [
            ("publish + decide", swapped["time"] - swapped.get("seconds", 0) - finished["time"]),
            ("swap (engine pause)", swapped.get("seconds", float("nan"))),
            ("first answer from the new version", t_live - swapped["time"]),
        ]
        out["turnaround_s"] = t_live - t_save
    else:
        out["turnaround_s"] = float("nan")  # rejected: nothing goes live, so there is no swap to time
    out["stages"] = stages
    return out


def gate_split(gate: dict) -> list[tuple[str, float]]:
    """What the gate's measures of the candidate and of the live adapter took (voice_metrics' own clock)."""
    out = []
    for side in ("candidate", "reference"):
        seconds = (gate.get(side) or {}).get("seconds") or {}
        out += [(f"  gate: {side} {k}", v) for k, v in seconds.items() if isinstance(v, (int, float))]
    return out


def child_breakdown(project: Path, run_id: str | None) -> list[tuple[str, float]]:
    """The training child's own split (its run folder's time_metrics.json and train_log.json): setup (model
    load, data, memory plan), the first step (where a compiled layer compiles), the other steps."""
    run = project / ".penwright" / "runs" / str(run_id)
    try:
        t = json.loads((run / "time_metrics.json").read_text())
        log = [r for r in json.loads((run / "train_log.json").read_text()) if r.get("elapsed_s") is not None]
    except (OSError, ValueError):
        return []
    first = next((r["elapsed_s"] for r in log if r.get("step") == 1), float("nan"))
    import yaml

    levers = str(yaml.safe_load((run / "config.yaml").read_text()).get("levers", "?"))
    return [
        (f"  train: setup (levers: {levers[:16]})", t["setup_s"]),
        *((f"    setup: {part}", seconds) for part, seconds in (t.get("setup_split") or {}).items()),
        ("  train: first step", first),
        ("  train: other steps", t["train_s"] - first),
    ]


def report(args, words: int, cold: dict, idle: list[float], run: dict, status: dict) -> dict:
    during, stages = run["during"], run["stages"]
    steps = "the default preset" if args.defaults else f"{args.steps} training steps"
    what = f"{steps}, {words} words, base {args.shape or args.base}"
    if run.get("by_hand"):
        print(
            f"\nthe gate rejected the candidate ({run['gate_reason']}) {run['decided_s']:.1f}s after the save; "
            f"promoted by hand (random-init base), save-to-live: {run['turnaround_s']:.1f}s ({what})"
        )
    elif run["promoted"]:
        print(f"\nsave-to-live turnaround: {run['turnaround_s']:.1f}s ({what})")
    else:
        print(f"\nthe candidate was rejected ({run['gate_reason']}): stages up to the gate only ({what})")
    for name, s in stages:
        print(f"  {name:<38} {s:8.2f}s")
    print(
        f"\ncompletion latency (~{args.prompt_tokens} prompt tokens, 24 new tokens), "
        f"n={len(idle)} idle / {len(during)} training, engine on {status.get('device', '?')}:"
    )
    for q in (0.5, 0.95):
        a, b = pct(idle, q), pct(during, q)
        print(f"  p{int(q * 100):<3} idle {a * 1000:8.0f} ms   while training {b * 1000:8.0f} ms   ratio {b / a:5.2f}x")
    return {
        "turnaround_s": round(run["turnaround_s"], 2),
        "promoted": run["promoted"],
        "promoted_by_hand": bool(run.get("by_hand")),
        "decided_s": round(run["decided_s"], 2),
        "gate_reason": run["gate_reason"],
        "stages": {n: round(s, 3) for n, s in stages},
        "cold_start": cold,
        "words": words,
        "steps": args.steps,
        "base": args.shape or args.base,
        "engine": status,
        "idle_ms": [round(x * 1000, 1) for x in idle],
        "training_ms": [round(x * 1000, 1) for x in during],
        "idle_p50_ms": round(pct(idle, 0.5) * 1000),
        "training_p50_ms": round(pct(during, 0.5) * 1000),
    }


def engine_status(url: str) -> dict:
    import httpx

    try:
        status = httpx.get(url + "/api/status", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return {}
    engine = status.get("engine") or {}
    keys = ("backend", "device", "quantization", "merged_adapter", "memory_bytes")
    return {"lore": status.get("lore"), **{k: engine.get(k) for k in keys if k in engine}}


def main() -> None:
    args = parse_args()
    clock = Clock(args.deadline)
    tmp = Path(tempfile.mkdtemp(prefix="pw-turnaround-"))
    base = str(build_shape(args.shape, Path(args.tokenizer), tmp / f"base-{args.shape}")) if args.shape else args.base
    chapters, edit = manuscript_words(Path(args.corpus), args.words)
    extra = "".join(f", {k}: {v}" for k, v in (("dtype", args.dtype), ("backend", args.backend)) if v != "auto")
    project = make_project(
        tmp / "novel",
        chapters,
        base,
        args.steps,
        min_new_words=min(2000, len(edit.split()) // 2),
        model_extra=extra,
        gate_margin=args.gate_margin,
        defaults=args.defaults,
        compile_choice=args.train_compile,
    )
    words = sum(len(c.split()) for c in chapters)
    print(f"manuscript: {words} words in {len(chapters)} chapters; edit: {len(edit.split())} words; base: {base}")
    d = DaemonProcess(project, tmp / "daemon.log")
    try:
        t_start = time.time()
        d.start(timeout=clock.left(600))
        cold = cold_start(d, t_start, clock, random_init=bool(args.shape))
        prompt = " ".join(" ".join(chapters).split()[: int(args.prompt_tokens * 0.75)])
        completion_latencies(d.url, prompt, 2)  # warm-up (first CUDA kernels, allocator), not counted
        idle = completion_latencies(d.url, prompt, args.requests)
        run = turnaround(d, project, edit, prompt, args, clock)
        result = report(args, words, cold, idle, run, engine_status(d.url))
        print(
            json.dumps({k: result[k] for k in ("turnaround_s", "promoted", "stages", "idle_p50_ms", "training_p50_ms")})
        )
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=1))
    finally:
        d.stop()
        if args.json_out:
            shutil.copy(tmp / "daemon.log", Path(args.json_out).with_name("daemon.log"))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
