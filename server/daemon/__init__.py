"""The daemon's background pipeline, one part per module, composed by `core.Daemon`:

watcher.py     watches the manuscript and lore folders (debounced batches of changed files)
keeper.py      re-curates through the workspace, updates the lore index, counts pending words
scheduler.py   the retrain policy: when a job starts (words waiting, author idle, hourly cap)
jobs.py        the job queue in SQLite (survives restarts; a running job resumes)
job_runner.py  runs one job at a time: its dataset, the training child, then the gate
child.py       the training child process (progress over stdout; cancel kills its group)
child_main.py  what runs inside the child: train, then measure the candidate for the gate
gate.py        publish, decide, promote or reject; a promotion is made live through the daemon
core.py        the Daemon: composes the parts, the routers' entry points
serve.py       `penwright serve`: the app, the socket, uvicorn
"""

from penwright.server.daemon.core import Daemon, DaemonLock
from penwright.server.daemon.serve import build_app, make_services, serve

__all__ = ["Daemon", "DaemonLock", "build_app", "make_services", "serve"]
