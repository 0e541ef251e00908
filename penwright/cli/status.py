"""`penwright status [--follow]`: what the project's daemon is doing.

With --follow, a live progress bar from its events.
"""

from __future__ import annotations

import argparse

from penwright.cli.common import add_project_argument, project_from
from penwright.errors import ServeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_argument(parser)
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep showing events (training progress, promotions)"
    )
    parser.add_argument("--url", default=None, help="the daemon's URL (default: from .penwright/daemon.json)")


def daemon_url(project) -> str:
    from penwright.server.daemon_info import read_daemon_info

    info = read_daemon_info(project.root)
    if info is None:
        raise ServeError(
            f"No Penwright daemon is running for {project.root}.",
            f"Start one with `penwright serve --project {project.root}`.",
        )
    return info["url"]


def run(args: argparse.Namespace) -> int:
    import httpx
    from rich.console import Console

    project = project_from(args)
    url = (args.url or daemon_url(project)).rstrip("/")
    headers = auth_headers(project)
    console = Console()
    try:
        resp = httpx.get(f"{url}/api/dashboard", headers=headers, timeout=10)
    except httpx.HTTPError as err:
        raise ServeError(
            f"The daemon at {url} does not answer ({err}).", "Is it still starting? Try again, or restart it."
        ) from None
    _print_status(console, _state(resp, url))
    if args.follow:
        return _follow(console, url, headers)
    return 0


def auth_headers(project) -> dict:
    """The project's own server.api_key, sent as the daemon expects it."""
    key = project.settings.server.api_key
    return {"Authorization": f"Bearer {key}"} if key else {}


def _state(resp, url: str) -> dict:
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code == 200 and isinstance(data, dict) and "status" in data:
        return data
    message = ((data.get("error") or {}).get("message") if isinstance(data, dict) else None) or resp.text[:200]
    hint = {
        401: "Set server.api_key in this project's penwright.yaml to the daemon's key (or pass --url of "
        "this project's daemon)."
    }.get(resp.status_code, "Check that --url points at a Penwright daemon.")
    raise ServeError(f"The daemon at {url} answered {resp.status_code}: {message}", hint)


def _print_status(console, state: dict) -> None:
    s, live = state["status"], state.get("live")
    console.print(f"[bold]{s.get('title')}[/]  {s.get('project')}  (daemon pid {s.get('pid')})")
    if live:
        loss = (live.get("metrics") or {}).get("eval_loss")
        console.print(f"live adapter: [green]{live['name']}@v{live['version']}[/]  eval loss {loss}")
    else:
        console.print("live adapter: [yellow]none yet[/] (serving the base model)")
    console.print(
        f"pending: {s.get('pending_words')} new words of {s.get('min_new_words')}"
        + (f"  (waiting: {s['waiting_for']})" if s.get("waiting_for") else "")
    )
    for job in state.get("jobs", [])[:5]:
        console.print(
            f"  job {job['id']:>3} {job['status']:<10} {job['trigger']:<6} step {job['step']}/{job['total']}"
            + (f"  v{job['adapter_version']} {job['decision']}" if job.get("adapter_version") else "")
            + (f"  [red]{job['error']}[/]" if job.get("error") and job["status"] == "failed" else "")
        )


def _follow(console, url: str, headers: dict) -> int:
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from penwright.server.events import parse_sse_lines

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        tasks: dict[int, int] = {}
        with httpx.stream("GET", f"{url}/api/events", headers=headers, timeout=None) as resp:
            if resp.status_code != 200:
                resp.read()
                _state(resp, url)
            for ev in parse_sse_lines(resp.iter_lines()):
                _show(progress, tasks, ev)
    return 0


def _show(progress, tasks: dict, ev: dict) -> None:
    kind, job = ev.get("type"), ev.get("job_id")
    if kind == "job.progress" and job is not None and ev.get("total"):
        if job not in tasks:
            tasks[job] = progress.add_task(f"job {job} training", total=ev["total"], loss="")
        loss = f"loss {ev['loss']:.3f}" if isinstance(ev.get("loss"), (int, float)) else ""
        progress.update(tasks[job], completed=ev.get("step") or 0, total=ev["total"], loss=loss)
    elif kind in ("job.finished", "job.failed", "job.cancelled") and job in tasks:
        progress.update(tasks[job], description=f"job {job} {kind.split('.')[1]}")
    elif kind != "job.progress":
        detail = ev.get("reason") or ev.get("error") or ev.get("message") or ev.get("model") or ""
        progress.console.print(f"[dim]{kind}[/] {detail}".rstrip())
