"""Save-to-live turnaround of the real daemon, per stage, and completion latency while a job trains.

    .venv/bin/python benchmarks/turnaround.py                      # 31M base, 20,000-word manuscript, CPU
    .venv/bin/python benchmarks/turnaround.py --words 100000 --base /path/to/model --steps 30   # e.g. on a GPU

Builds a temp project from a public-domain corpus (../shared/corpora), starts `penwright serve` on it,
lets the first adapter train (cold start), then appends a new passage to a chapter (the author saves) and
times each stage from the events: debounce (save -> curation starts), curate, wait (scheduler idle wait +
child start), train, gate (held-out eval of candidate and live), publish + swap, first completion from the
new version. Completion latency (inline-completion shaped: ~`--prompt-tokens` prompt, 24 new tokens) is
measured idle and while the job trains, side by side. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
SHARED = REPO.parent / "shared"

from daemon_proc import DaemonProcess  # noqa: E402


def manuscript_words(corpus: Path, words: int, skip: int = 2000) -> tuple[list[str], str]:
    """`words` words of the corpus split into ~5,000-word chapters, plus a later passage to add as an edit."""
    text = " ".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(corpus.glob("*.txt")))
    paras = [p.strip().replace("\n", " ") for p in text.split("\n\n") if len(p.split()) > 20]
    out, count, i = [], 0, 0
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
    edit = "\n\n".join(paras[i + 50:i + 50 + 30])
    return chapters, edit


def make_project(root: Path, chapters: list[str], base: str, steps: int, min_new_words: int) -> Path:
    (root / "manuscript").mkdir(parents=True)
    for n, ch in enumerate(chapters, 1):
        (root / "manuscript" / f"{n:02d}.txt").write_text(ch + "\n")
    (root / "penwright.yaml").write_text(f"""title: turnaround benchmark
manuscript: {{folders: [manuscript]}}
lore: {{enabled: false}}
model: {{base: "{base}", max_context_tokens: 1024}}
curation: {{target_tokens: 400, max_tokens: 600, pair_types: [continuation, fim]}}
training:
  preset: fast
  overrides: {{max_steps: {steps}, eval_every: {steps}, save_every: {steps}, warmup_steps: 1, batch_size: 2,
              max_seq_length: 512, plateau_patience: null, eval_max_rows: 16}}
retrain: {{min_new_words: {min_new_words}, idle_seconds: 0, max_per_hour: 60, gate_margin: 0.5}}
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
            r = c.post("/v1/completions", json={"model": "penwright", "prompt": prompt, "max_tokens": 24, "temperature": 0})
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
        r = httpx.post(d.url + "/v1/completions", json={"model": "penwright", "prompt": "The", "max_tokens": 1}, timeout=60)
        if r.headers.get("X-Penwright-Adapter") == f"penwright@v{version}":
            return time.time()
        time.sleep(0.05)
    raise SystemExit(f"v{version} never answered")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=20000)
    ap.add_argument("--corpus", default=str(SHARED / "corpora" / "austen"))
    ap.add_argument("--base", default=str(SHARED / "models" / "gutenberg-qwen2-31m"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pw-turnaround-"))
    chapters, edit = manuscript_words(Path(args.corpus), args.words)
    project = make_project(tmp / "novel", chapters, args.base, args.steps, min_new_words=min(2000, len(edit.split()) // 2))
    words = sum(len(c.split()) for c in chapters)
    print(f"manuscript: {words} words in {len(chapters)} chapters; edit: {len(edit.split())} words; base: {args.base}")
    d = DaemonProcess(project, tmp / "daemon.log")
    t_start = time.time()
    d.start(timeout=600)
    ready = d.wait_event(lambda e: e["type"] == "daemon.ready", 600)
    first = d.wait_event(lambda e: e["type"] == "adapter.swapped", 3600)
    print(f"cold start: daemon up + first curation {ready['time'] - t_start:.1f}s; "
          f"first adapter v{first['version']} live {first['time'] - t_start:.1f}s after start")

    prompt_words = " ".join(" ".join(chapters).split()[: int(args.prompt_tokens * 0.75)])
    idle = completion_latencies(d.url, prompt_words, args.requests)

    mark = d.last_id
    t_save = time.time()
    with open(project / "manuscript" / "02.txt", "a", encoding="utf-8") as fh:
        fh.write("\n\n" + edit + "\n")
    curate = d.wait_event(lambda e: e["type"] == "curate" and e.get("files"), 600, mark)
    started = d.wait_event(lambda e: e["type"] == "job.started", 600, curate["id"])
    job = started["job_id"]
    d.wait_event(lambda e: e["type"] == "job.progress" and e.get("job_id") == job and e.get("step"), 3600, started["id"])
    stop = threading.Event()
    during: list[float] = []
    t = threading.Thread(target=lambda: during.extend(completion_latencies(d.url, prompt_words, args.requests, stop)))
    t.start()
    finished = d.wait_event(lambda e: e["type"] in ("job.finished", "job.failed") and e.get("job_id") == job, 3600, mark)
    stop.set()
    t.join()
    if finished["type"] == "job.failed":
        raise SystemExit(f"job failed: {finished['error']}")
    gate = d.wait_event(lambda e: e["type"] == "gate" and e.get("job_id") == job, 600, mark)
    print(f"gate: {gate['decision']} - {gate['reason']}")
    if gate["decision"] != "promote":
        raise SystemExit("the candidate was rejected; no swap to time")
    swapped = d.wait_event(lambda e: e["type"] == "adapter.swapped" and e["version"] == gate["version"], 600, mark)
    t_live = wait_version(d, gate["version"])
    timings = finished.get("timings") or {}
    curate_s = curate["seconds"]
    stages = [
        ("debounce (save -> curation starts)", curate["time"] - curate_s - t_save),
        ("curate (changed file, incremental)", curate_s),
        ("schedule + child start", started["time"] - curate["time"]),
        ("train (child: load + steps + save)", timings.get("train_s", float("nan"))),
        ("gate (eval candidate + live)", timings.get("gate_eval_s", float("nan"))),
        ("publish + decide", swapped["time"] - swapped.get("seconds", 0) - finished["time"]),
        ("swap (engine pause)", swapped.get("seconds", float("nan"))),
        ("first answer from the new version", t_live - swapped["time"]),
    ]
    print(f"\nsave-to-live turnaround: {t_live - t_save:.1f}s ({args.steps} training steps, {words} words)")
    for name, s in stages:
        print(f"  {name:<38} {s:8.2f}s")
    print(f"\ncompletion latency (~{args.prompt_tokens} prompt tokens, 24 new tokens), n={len(idle)} idle / {len(during)} training:")
    for q in (0.5, 0.95):
        a, b = pct(idle, q), pct(during, q)
        print(f"  p{int(q * 100):<3} idle {a * 1000:8.0f} ms   while training {b * 1000:8.0f} ms   ratio {b / a:5.2f}x")
    print(json.dumps({"turnaround_s": round(t_live - t_save, 2), "stages": {n: round(s, 3) for n, s in stages},
                      "idle_p50_ms": round(pct(idle, .5) * 1000), "training_p50_ms": round(pct(during, .5) * 1000)}))
    d.stop()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
