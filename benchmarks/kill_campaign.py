"""kill -9 campaign (issue 14): the daemon and its training child killed at random points, N times, with the
project's state checked after each kill. Prints its figures; asserts nothing (tests do that).

    .venv/bin/python benchmarks/kill_campaign.py --kills 100 [--seed 14] [--keep DIR]

Each round starts `penwright serve` on a copy of examples/novel (tiny training through penwright.yaml), picks
a phase (start-up, training, publishing: the gate's evaluation or the registry publish) and a victim (the daemon,
or the training child when one runs), waits a random time inside that phase and sends SIGKILL. The next round's
daemon starts on the same project, so every kill is followed by a restart that must recover from it.

After each kill (once the next daemon answers) the checks are:
- the registry: every version's folder is complete (adapter_config.json and weights that load), at most one live,
  no staging leftovers, no two versions from one run (a double publish);
- nothing lost: every version and every job seen before the kill is still there (a job may have moved on);
- the author's manuscript and lore: byte for byte unchanged;
- every failed job says what happened (no bare errno, no traceback, no empty message).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from daemon_proc import EXAMPLE, DaemonProcess, configure  # noqa: E402 (tests/ on sys.path above)
from pwtest import tree_digest  # noqa: E402

PHASES = ("startup", "training", "publishing")
ENDED = ("job.finished", "job.failed", "job.cancelled")
UNCLEAR = ("[Errno", "Traceback", "KeyError", "NoneType")


@dataclass
class Figures:
    kills: Counter = field(default_factory=Counter)
    lost_versions: int = 0
    lost_jobs: int = 0
    corrupt: list = field(default_factory=list)
    double_publishes: int = 0
    changed_text: int = 0
    unclear: list = field(default_factory=list)
    missed: int = 0  # rounds whose phase ended before the kill landed (not counted as kills)

    def print(self, seconds: float) -> None:
        total = sum(self.kills.values())
        by = ", ".join(f"{k}: {v}" for k, v in sorted(self.kills.items()))
        print(
            f"\nkill -9 campaign: {total} kills ({by}) in {seconds / 60:.1f} min; {self.missed} rounds "
            "missed their phase"
        )
        print(f"  lost: {self.lost_versions} adapter versions, {self.lost_jobs} jobs")
        print(f"  corrupt registries: {len(self.corrupt)}" + (f" {self.corrupt[:3]}" if self.corrupt else ""))
        print(f"  double publishes (two versions from one run): {self.double_publishes}")
        print(f"  manuscript or lore bytes changed: {self.changed_text}")
        print(f"  unclear job messages: {len(self.unclear)}" + (f" {self.unclear[:3]}" if self.unclear else ""))


def snapshot(project: Path) -> dict:
    """Versions and jobs straight from the state database (read-only: works while no daemon runs)."""
    db = project / ".penwright" / "penwright.db"
    if not db.is_file():
        return {"versions": {}, "jobs": {}}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        versions = {
            v: (name, status, run_id)
            for v, name, status, run_id in con.execute("SELECT version, name, status, run_id FROM adapter_versions")
        }
        jobs = {i: (status, error) for i, status, error in con.execute("SELECT id, status, error FROM jobs")}
    except sqlite3.OperationalError:  # tables not made yet (killed during the first start-up)
        versions, jobs = {}, {}
    finally:
        con.close()
    return {"versions": versions, "jobs": jobs}


def check(project: Path, before: dict, text_digest: dict, figures: Figures) -> None:
    after = snapshot(project)
    figures.lost_versions += len(set(before["versions"]) - set(after["versions"]))
    figures.lost_jobs += len(set(before["jobs"]) - set(after["jobs"]))
    runs = Counter(run for _, _, run in after["versions"].values() if run)
    figures.double_publishes += sum(n - 1 for n in runs.values() if n > 1)
    live = [v for v, (_, status, _) in after["versions"].items() if status == "live"]
    if len(live) > 1:
        figures.corrupt.append(f"{len(live)} live versions")
    adapters = project / ".penwright" / "adapters"
    for v, (name, _, _) in after["versions"].items():
        problem = adapter_problem(adapters / name / f"v{v}")
        if problem:
            figures.corrupt.append(f"v{v}: {problem}")
    for job_id, (status, error) in after["jobs"].items():
        if status == "failed" and unclear(error):
            figures.unclear.append(f"job {job_id}: {error!r}")
    digest = tree_digest(project / "manuscript") | tree_digest(project / "lore")
    figures.changed_text += digest != text_digest


def unclear(message: str | None) -> bool:
    """A failure message an author cannot act on: empty, a bare exception text (`'messages'`), an errno, a traceback."""
    return not message or len(message.split()) < 4 or any(u in message for u in UNCLEAR)


def adapter_problem(folder: Path) -> str | None:
    if not (folder / "adapter_config.json").is_file():
        return "no adapter_config.json"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no weights"
    from safetensors.torch import load_file

    try:
        for w in weights:
            load_file(w)
    except Exception as err:  # noqa: BLE001 (any failure to load is a corrupt version)
        return f"{w.name}: {err}"
    return None


def running_child(d: DaemonProcess) -> int | None:
    try:
        jobs = d.api("GET", "/api/jobs").json()["jobs"]
    except Exception:  # noqa: BLE001 (the daemon is going down)
        return None
    return next((j["pid"] for j in jobs if j["status"] == "running" and j["pid"]), None)


def ask_until(d: DaemonProcess, pred, timeout: float, rng: random.Random) -> dict:
    """Ask for a job, and again each time a job ends before `pred` is seen: a job resumed after the last kill may
    settle without training (killed after its last step), and a request made while it waited joins it."""
    deadline = time.monotonic() + timeout
    after = d.last_id
    while True:
        d.api("POST", "/api/train", json={"overrides": {"max_steps": rng.choice([6, 8, 10]), "save_every": 2}})
        event = d.wait_event(
            lambda e: pred(e) or e["type"] in ENDED, max(1.0, deadline - time.monotonic()), after
        )  # AssertionError when the deadline passes
        if pred(event):
            return event
        after = event["id"]


def one_round(d: DaemonProcess, phase: str, rng: random.Random) -> str | None:
    """Drive the daemon into `phase` and kill something in it; returns what was killed, or None if missed."""
    if phase == "startup":
        time.sleep(rng.uniform(0.0, 8.0))  # lock, state, recovery, engine load, initial curation
        d.kill9()
        return "daemon@startup"
    if phase == "training":
        ask_until(d, lambda e: e["type"] == "job.progress" and (e.get("step") or 0) >= 1, 240, rng)
        time.sleep(rng.uniform(0.0, 2.0))
    else:  # publishing: the gate's evaluation in the child, or the daemon publishing and promoting
        ask_until(
            d,
            lambda e: (
                e["type"] in ("job.progress", "job.finished", "gate")
                and (e.get("phase") == "gate" or e["type"] != "job.progress")
            ),
            300,
            rng,
        )
        time.sleep(rng.uniform(0.0, 0.4))
    child = running_child(d)
    if child is not None and rng.random() < 0.5:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            return None
        time.sleep(rng.uniform(0.0, 1.0))
        d.kill9()  # and the daemon too, so the next round restarts on what the child left
        return f"child+daemon@{phase}"
    d.kill9()
    return f"daemon@{phase}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--keep", type=Path, default=None, help="keep the project and logs here")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="pw-kill-"))
    project = work / "novel"
    if not project.exists():
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".penwright"))
        configure(project, min_new_words=10**6)  # only the campaign's own "retrain now" jobs
    text_digest = tree_digest(project / "manuscript") | tree_digest(project / "lore")
    figures, t0 = Figures(), time.monotonic()
    n = 0
    while sum(figures.kills.values()) < args.kills:
        n += 1
        phase = rng.choice(PHASES)
        before = snapshot(project)
        d = DaemonProcess(project, work / f"daemon-{n:03d}.log")
        if phase == "startup":
            _spawn(d)
        else:
            d.start(timeout=300)
        try:
            what = one_round(d, phase, rng)
        except AssertionError:  # the phase never came (e.g. the job ended first)
            what = None
            d.kill9()
        if what is None:
            figures.missed += 1
        else:
            figures.kills[what] += 1
        check(project, before, text_digest, figures)
        print(f"round {n}: {what or 'missed ' + phase}; kills so far {sum(figures.kills.values())}", flush=True)
    final = DaemonProcess(project, work / "daemon-final.log").start(timeout=300)  # the last restart recovers too
    time.sleep(2)
    final.stop()
    check(project, snapshot(project), text_digest, figures)
    figures.print(time.monotonic() - t0)
    published = snapshot(project)["versions"]
    print(
        f"  versions published during the campaign: {len(published)}; jobs: "
        + ", ".join(f"{k} {v}" for k, v in Counter(s for s, _ in snapshot(project)["jobs"].values()).items())
    )
    print(f"project and daemon logs: {work}")
    return 0


def _spawn(d: DaemonProcess) -> None:
    """Start `penwright serve` without waiting for it to answer (to kill it during start-up)."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    d.log = open(d.log_path, "a")  # noqa: SIM115 (closed with the process)
    d.proc = subprocess.Popen(
        [sys.executable, "-m", "penwright", "serve", "--project", str(d.project), "--port", "0"],
        stdout=d.log,
        stderr=subprocess.STDOUT,
        env=env,
    )


if __name__ == "__main__":
    sys.exit(main())
