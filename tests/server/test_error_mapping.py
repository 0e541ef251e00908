"""Every author-facing error carries its HTTP status and code; one mapper turns it into the OpenAI shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from penwright.errors import (
    AdapterNotFoundError,
    DaemonLockedError,
    DatasetError,
    PenwrightError,
    RegistryError,
    ServeError,
    SettingsError,
)
from penwright.server.daemon.jobs import JobNotFoundError
from penwright.server.services.errors import api_error


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (AdapterNotFoundError(7), 404, "model_not_found"),
        (RegistryError("v3 is already live.", "Pick an earlier version."), 409, "adapter_conflict"),
        (JobNotFoundError(42), 404, "job_not_found"),
        (SettingsError(["training.rank: must be positive"]), 400, "invalid_settings"),
        (DatasetError("No training set.", "Run `penwright curate` first."), 400, "dataset_error"),
        (ServeError("the engine is not running", "Restart the daemon."), 503, "engine_unavailable"),
        (DaemonLockedError(Path("novel"), 123), 409, "daemon_running"),
        (PenwrightError("anything else", "do this"), 400, "invalid_request"),
    ],
)
def test_the_error_says_its_own_status_and_code(err, status, code):
    mapped = api_error(err)
    assert (mapped.status, mapped.code) == (status, code)
    assert mapped.body()["error"]["message"] == str(err) and err.hint in mapped.message  # what to do, too


def test_the_registry_and_the_job_queue_raise_the_typed_errors(tmp_path):
    from penwright.server.daemon.jobs import JobQueue
    from penwright.trainer.registry import Registry

    with pytest.raises(AdapterNotFoundError, match="v9"):
        Registry(tmp_path / "db.sqlite", tmp_path / "adapters").get(9)
    with pytest.raises(JobNotFoundError, match="42"):
        JobQueue(tmp_path / "db.sqlite").get(42)


def test_routes_answer_with_the_errors_status(tmp_path, tiny_model_dir):
    import httpx
    from daemon_fixtures import daemon_app

    with daemon_app(tiny_model_dir, tmp_path) as (_daemon, server):
        missing_job = httpx.get(f"{server.url}/api/jobs/4242")
        missing_adapter = httpx.post(f"{server.url}/api/adapters/99/promote", json={})
    assert missing_job.status_code == 404 and missing_job.json()["error"]["code"] == "job_not_found"
    assert missing_adapter.status_code == 404 and missing_adapter.json()["error"]["code"] == "model_not_found"
