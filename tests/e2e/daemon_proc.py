"""A real `penwright serve` subprocess for end-to-end tests, and a reader of its /api/events stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from pwtest import tree_digest  # noqa: F401 (re-exported for the e2e tests)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "novel"


TINY_SETTINGS = """
training:
  preset: fast
  overrides: {max_steps: 4, eval_every: 2, save_every: 2, warmup_steps: 1, plateau_patience: null, batch_size: 2}
retrain:
  min_new_words: %(min_new_words)d
  idle_seconds: 1
  max_per_hour: 20
  gate_margin: 0.5
watch:
  quiet_seconds: 0.5
"""


def configure(project: Path, min_new_words: int = 1500) -> None:
    """Tiny, seconds-long training through penwright.yaml (the example's own `training:` line is replaced)."""
    settings = project / "penwright.yaml"
    text = settings.read_text().replace("training:\n  preset: fast\n", "")
    settings.write_text(text + TINY_SETTINGS % {"min_new_words": min_new_words})


class DaemonProcess:
    def __init__(self, project: Path, log_path: Path):
        self.project, self.log_path = Path(project), Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 180) -> DaemonProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        info = self.project / ".penwright" / "daemon.json"
        if info.exists():
            info.unlink()  # a stale one from a killed daemon
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "penwright", "serve", "--project", str(self.project), "--port", "0"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if info.is_file():
                try:
                    data = json.loads(info.read_text())
                    if data["pid"] == self.proc.pid:
                        self.url = data["url"]
                        if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                            break
                except (json.JSONDecodeError, KeyError, httpx.HTTPError):
                    pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"daemon did not come up in {timeout}s:\n{self.log_text()[-3000:]}")
        self._reader = threading.Thread(target=self._read_events, daemon=True)
        self._reader.start()
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _read_events(self) -> None:
        from penwright.server.events import parse_sse_lines

        try:
            with httpx.stream("GET", self.url + "/api/events?since=0", timeout=httpx.Timeout(5, read=None)) as resp:
                for event in parse_sse_lines(resp.iter_lines()):
                    with self._cond:
                        self.events.append(event)
                        self._cond.notify_all()
        except httpx.HTTPError:
            pass  # daemon gone

    def wait_event(self, pred, timeout: float = 120, after: int = 0) -> dict:
        """The first event (with id > after) matching `pred`; fails with the events seen."""

        def found():
            return next((e for e in self.events if e["id"] > after and pred(e)), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            event = found()
        if event is None:
            seen = "\n".join(
                json.dumps({k: e.get(k) for k in ("id", "type", "job_id", "error", "reason", "message", "step")})
                for e in self.events[-40:]
            )
            raise AssertionError(
                f"no matching event in {timeout}s; last events:\n{seen}\nlog:\n{self.log_text()[-2000:]}"
            )
        return event

    def of_type(self, type_: str, after: int = 0) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e["type"] == type_ and e["id"] > after]

    @property
    def last_id(self) -> int:
        with self._cond:
            return self.events[-1]["id"] if self.events else 0

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=30, **kw)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


NEW_SCENE = """

The storm came in off the reef before the lamp was lit, and Maren stood at the gallery rail with her
coat buttoned to the throat, counting the seconds between the flashes as her father had taught her.
Below her the sea heaved against the rocks, white and black and white again, and the gulls had gone
inland hours ago, which was how she had known.

"You'll catch your death up here," said Tobias Ashe from the stair, though he did not come up.

"Then I'll catch it watching," she said. "Somebody has to. The Gannet is out past the Teeth, and
Carrow says she'll run for the harbour before the tide turns."

He climbed the last steps then and stood beside her, and for a long while neither of them spoke. The
light turned above them, slow and patient, throwing its long arm out over the water and drawing it
back again, and each time it passed she searched the dark for a sail, a spar, a lantern, anything at
all. Once she thought she saw something and gripped his sleeve, but it was only the foam breaking on
the outer ledge, and she let go again without a word.

"My father used to say the sea keeps a ledger," she said at last. "Every ship it lets go home is
written on one side, and every ship it keeps is written on the other, and at the end of the year the
sums must balance."

"Your father said a great many things."

"He did. Most of them were true." She wiped the rain from her eyes. "That is the trouble with him."

Toward midnight the wind backed into the north and the rain turned to sleet, rattling on the glass
like thrown gravel. Tobias went down to wind the clockwork and came back with two mugs of tea gone
half cold on the stair, and she drank hers without tasting it. At one o'clock they saw the flare:
a single red star climbing above the Teeth and falling back into the dark, and then another, and
Maren was already on the stair before the second one had died, calling for the boat crew, calling for
lanterns and rope, her voice thin and high against the roar of the water on the rocks below.
"""
