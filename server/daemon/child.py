"""Training in a child process, so a crash, an out-of-memory kill or a `kill -9` there never takes the daemon down.

The child is `python -m penwright.server.daemon.child_main SPEC.json` (a fresh
interpreter: no forked torch state, GPU memory freed when it exits). It reports
one JSON object per stdout line: `{"event": "progress", step, total, loss,
eta_s}`, `{"event": "log", ...}`, and finally `{"event": "result", ...}` or
`{"event": "error", "message": ...}`. The child dies with its parent (Linux
parent-death signal, plus a parent-pid check everywhere else).

A `Standby` is the next child started ahead of its job (`retrain.standby_child`): Python and the heavy imports
done while the daemon waits, it reads its spec's path from stdin when a job begins.

Cancel kills the child's process group at once. The child never publishes an
adapter itself: the daemon publishes only after a complete result, so a
cancelled or killed run leaves no half adapter in the registry.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CHILD_MODULE = "penwright.server.daemon.child_main"


@dataclass
class RunOutcome:
    status: str  # "succeeded" | "failed" | "cancelled"
    result: dict = field(default_factory=dict)
    error: str | None = None
    returncode: int | None = None


def train_threads(env: dict | None = None) -> int:
    """CPU threads the training child uses: PENWRIGHT_TRAIN_THREADS, else half the cores (the rest serve)."""
    env = os.environ if env is None else {**os.environ, **env}
    return int(env.get("PENWRIGHT_TRAIN_THREADS", "0") or 0) or max(1, (os.cpu_count() or 2) // 2)


def _linux_pdeathsig() -> None:
    """In the child, before exec: die with SIGKILL when the daemon dies; run at low priority."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    try:
        os.nice(5)  # serving completions comes first
    except OSError:
        pass


def _spawn(args: list[str], env: dict | None = None, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    child_env = {**os.environ, **(env or {}), "PENWRIGHT_PARENT_PID": str(os.getpid())}
    child_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=stdin,
        text=True,
        bufsize=1,
        env=child_env,
        start_new_session=True,  # its own process group: cancel kills grandchildren too
        preexec_fn=_linux_pdeathsig if sys.platform.startswith("linux") else None,
    )


def _adopt(standby: subprocess.Popen, spec_path: Path) -> subprocess.Popen | None:
    """The standby child, given its spec; None if it is gone (a fresh child is spawned instead)."""
    try:
        if standby.poll() is None:
            standby.stdin.write(f"{spec_path}\n")
            standby.stdin.close()
            return standby
    except OSError:
        pass
    tail = (standby.stderr.read() if standby.poll() is not None else "")[-500:]
    log.warning("the standby training process had exited (%s); starting a fresh one. %s", standby.returncode, tail)
    return None


class Standby:
    """The next training child, started before its job: on an H200 the Python start and the imports of torch,
    transformers and peft were 12.7 s of a 47.9 s save-to-live (benchmarks/device/turnaround.sh). It costs an
    idle process (a few hundred MB of memory, no GPU memory: CUDA starts with the job) while none runs."""

    def __init__(self, enabled: bool):
        self.enabled, self.proc = enabled, None
        # Linux's parent-death signal fires when the spawning THREAD ends: spawn from a thread that stays
        self._spawner = None

    def ensure(self) -> None:
        """Start one unless one is waiting."""
        if not self.enabled or (self.proc is not None and self.proc.poll() is None):
            return
        if self._spawner is None:
            from concurrent.futures import ThreadPoolExecutor

            self._spawner = ThreadPoolExecutor(1, thread_name_prefix="standby-spawner")
        try:
            self.proc = self._spawner.submit(_spawn, ["--standby"], None, subprocess.PIPE).result()
        except OSError:
            log.warning("could not start a standby training process", exc_info=True)
            self.proc = None

    def take(self) -> subprocess.Popen | None:
        proc, self.proc = self.proc, None
        return proc

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


class ChildRun:
    """One training child. `wait()` returns how it ended; `cancel()` ends it now."""

    def __init__(
        self,
        spec: dict,
        spec_path: Path,
        on_event: Callable[[dict], None],
        env: dict | None = None,
        standby: subprocess.Popen | None = None,
    ):
        self.spec, self.spec_path, self.on_event = spec, Path(spec_path), on_event
        self.spec_path.parent.mkdir(parents=True, exist_ok=True)
        self.spec_path.write_text(json.dumps(spec, indent=2, default=str))
        self._cancelled = threading.Event()
        self._result: dict | None = None
        self._error: str | None = None
        self._stderr_tail: list[str] = []
        self._times = {"spawned": time.monotonic()}  # spawned, first message, result: the child's start and exit
        adopted = _adopt(standby, self.spec_path) if standby is not None and env is None else None
        self.from_standby = adopted is not None
        self.proc = adopted or _spawn([str(self.spec_path)], env)
        self._readers = [
            threading.Thread(target=self._read_stdout, name="runner-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="runner-stderr", daemon=True),
        ]
        for t in self._readers:
            t.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._times.setdefault("first", time.monotonic())
            if msg.get("event") == "result":
                self._times["result"] = time.monotonic()
                self._result = msg
            elif msg.get("event") == "error":
                self._error = msg.get("message") or "training failed"
            try:
                self.on_event(msg)
            except Exception:
                log.exception("runner event handler failed")

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr_tail = (self._stderr_tail + [line.rstrip()])[-30:]
            log.debug("trainer: %s", line.rstrip())

    def pause(self, paused: bool) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) the child and its process group: it keeps its memory, uses no CPU."""
        try:
            os.killpg(self.proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass

    def cancel(self) -> None:
        """Kill the child (and anything it started) now."""
        self._cancelled.set()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float | None = None) -> RunOutcome:
        code = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=5)
        if self._cancelled.is_set():
            return RunOutcome("cancelled", returncode=code)
        if code == 0 and self._result is not None:
            return RunOutcome("succeeded", result=self._with_times(time.monotonic()), returncode=code)
        if self._error:
            return RunOutcome("failed", error=self._error, returncode=code)
        if code is not None and code < 0:
            why = f"the training process was killed by signal {-code}"
            if -code == signal.SIGKILL:
                why += " (out of memory, or killed by hand)"
            return RunOutcome("failed", error=why + "; the daemon and the live adapter are unaffected", returncode=code)
        tail = " | ".join(self._stderr_tail[-5:])
        return RunOutcome("failed", error=f"the training process exited with code {code}: {tail}", returncode=code)

    def _with_times(self, exited: float) -> dict:
        """The result, its timings joined by the parent's view: Python start to the first message, the result to the
        process's exit, and whether the child was a standby."""
        t = self._times
        timings = {**(self._result.get("timings") or {}), "child_start_s": t.get("first", exited) - t["spawned"]}
        timings["child_exit_s"] = exited - t.get("result", exited)
        timings["standby"] = self.from_standby
        return {**self._result, "timings": timings}


def kill_stale_child(pid: int | None) -> bool:
    """After a daemon restart: kill a training child the dead daemon left behind (if it is ours)."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if CHILD_MODULE not in " ".join(proc.cmdline()):
            return False
        proc.kill()
        proc.wait(timeout=10)
        return True
    except psutil.Error as err:  # gone already, not ours, or would not die
        log.debug("stale training child %s not killed: %s", pid, err)
        return False


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
