"""workspace/executeCommand and training progress, through the real language server and daemon."""

from __future__ import annotations

import asyncio

import httpx
from lsp_support import execute, lsp_session, wait_until
from lsprotocol import types


def jobs(daemon) -> list[dict]:
    return httpx.get(f"{daemon.url}/api/jobs", timeout=10).json()["jobs"]


async def test_retrain_reports_progress_and_the_gate_decision(daemon):
    statuses: list[dict] = []
    async with lsp_session(daemon.root) as client:
        client.feature("penwright/status")(lambda ls, params: statuses.append(params))
        started = await execute(client, "penwright.retrainNow")
        assert started["ok"] and isinstance(started["job"]["id"], int), started
        job_id = started["job"]["id"]

        def ended() -> bool:
            return any(
                any(isinstance(v, types.WorkDoneProgressEnd) for v in values)
                for values in client.progress_reports.values()
            )

        assert await wait_until(ended, 300, interval=0.5), f"no progress end; jobs: {jobs(daemon)[:1]}"
        token, values = next(
            (t, v) for t, v in client.progress_reports.items() if str(t).startswith(f"penwright-train-{job_id}-")
        )
        begin, *middle, end = values
        assert isinstance(begin, types.WorkDoneProgressBegin) and begin.title == "Penwright: training"
        reports = [v for v in middle if isinstance(v, types.WorkDoneProgressReport)]
        assert reports and any(r.percentage for r in reports), values
        counted = [r for r in reports if r.percentage is not None]
        assert counted and "step " in counted[-1].message and "/6" in counted[-1].message, values
        assert [r.percentage for r in counted] == sorted(r.percentage for r in counted)
        assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "training finished"
        # the gate's verdict reaches the author as a message: promoted, or why not
        assert await wait_until(
            lambda: any(
                "adapter v" in m.message and "live" in m.message or "not promoted" in m.message for m in client.messages
            ),
            30,
        ), [m.message for m in client.messages]
        # the status bar feed saw the training and its end
        assert any(isinstance(s, dict) and s.get("training") for s in map(_plain, statuses))
        assert _plain(statuses[-1]).get("training") is None

        status = await execute(client, "penwright.status")
        assert status["ok"] and status["message"].startswith("Penwright: ")
        assert status["daemon"] == daemon.url and status["project"] == str(daemon.root)
        live = httpx.get(f"{daemon.url}/api/adapters", timeout=10).json()["live"]
        if live is not None:
            assert f"penwright@v{live}" in status["message"]
            # only one version was ever live: nothing to roll back to, said plainly
            rolled = await execute(client, "penwright.rollback")
            assert rolled["ok"] is False and "nothing to roll back to" in rolled["message"]
            chosen = await execute(client, "penwright.selectAdapter", f"v{live}")
            assert chosen["ok"] and chosen["model"] == f"penwright@v{live}"


def _plain(params) -> dict:
    if isinstance(params, dict):
        return params
    return {k: getattr(params, k) for k in dir(params) if not k.startswith("_")}


async def test_cancel_training_cancels_the_queued_or_running_job(daemon):
    async with lsp_session(daemon.root) as client:
        started = await execute(client, "penwright.retrainNow")
        job_id = started["job"]["id"]
        cancelled = await execute(client, "penwright.cancelTraining")
        assert cancelled["ok"] and job_id in cancelled["cancelled"]
        assert await wait_until(lambda: next(j for j in jobs(daemon) if j["id"] == job_id)["status"] == "cancelled", 60)
        nothing = await execute(client, "penwright.cancelTraining")
        assert nothing["ok"] and nothing["cancelled"] == [] and "no training" in nothing["message"]


async def test_commands_with_wrong_arguments_answer_clearly_and_the_server_survives(daemon):
    async with lsp_session(daemon.root) as client:
        bad = {
            ("penwright.cancelTraining", "abc"): "must be a number",
            ("penwright.selectAdapter", "latest-and-greatest"): "expected an adapter version",
            ("penwright.selectAdapter", "v99"): "has no model 'penwright@v99'",
            ("penwright.rollback", "v0"): "expected an adapter version",
            ("penwright.rollback", 1, 2): "at most one argument",
            ("penwright.acceptCompletion", "not an object"): "expected one object",
            ("penwright.status", "extra"): "expected no arguments",
        }
        for (command, *args), expected in bad.items():
            result = await execute(client, command, *args)
            assert result["ok"] is False and expected in result["message"], (command, args, result)
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) >= len(bad)
        base = await execute(client, "penwright.selectAdapter", "base")
        assert base["ok"] and base["model"] == "penwright:base"
        live = await execute(client, "penwright.selectAdapter", "live")
        assert live["ok"] and live["model"] == "penwright"
        try:
            await asyncio.wait_for(execute(client, "penwright.noSuchCommand"), 10)
            raise AssertionError("an unknown command should be refused")
        except AssertionError:
            raise
        except Exception as err:
            assert "noSuchCommand" in str(err)
        assert (await execute(client, "penwright.status"))["ok"]


async def test_the_progress_cancel_button_cancels_the_training_job(daemon):
    async with lsp_session(daemon.root) as client:
        job_id = (await execute(client, "penwright.retrainNow"))["job"]["id"]
        prefix = f"penwright-train-{job_id}-"

        def token():
            return next((t for t, v in client.progress_reports.items() if str(t).startswith(prefix) and v), None)

        assert await wait_until(lambda: token() is not None, 120, interval=0.3), "training never began"
        begin = client.progress_reports[token()][0]
        assert isinstance(begin, types.WorkDoneProgressBegin) and begin.cancellable is True
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token()))
        assert await wait_until(lambda: next(j for j in jobs(daemon) if j["id"] == job_id)["status"] == "cancelled", 60)
        assert await wait_until(lambda: isinstance(client.progress_reports[token()][-1], types.WorkDoneProgressEnd), 30)
        assert client.progress_reports[token()][-1].message == "training cancelled"
