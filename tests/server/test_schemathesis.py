"""schemathesis against the OpenAPI schema the live daemon publishes (issue 14, item 15): every generated request,
valid or not, gets a documented status with a documented body; never a 5xx. A short run in the default suite,
a long one (>= 1,000 cases) marked slow. Each prints the number of cases and of failures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_fixtures import daemon_app

ST = Path(sys.executable).with_name("schemathesis")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance,"
    "missing_required_header"
)


def run_schemathesis(url: str, out: Path, max_examples: int, phases: str, seed: int = 14) -> tuple[int, str, dict]:
    """The schemathesis CLI against `url`/openapi.json: (exit code, output, JSON report)."""
    report = out / "report.json"
    cmd = [
        str(ST),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "-n",
        str(max_examples),
        "--seed",
        str(seed),
        "-w",
        "1",
        "--phases",
        phases,
        "--request-timeout",
        "60",
        "--no-shrink",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--suppress-health-check",
        "all",
        "--exclude-path",
        "/api/events",
    ]  # an endless event stream: its first frame is checked in its own test
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False, cwd=out)
    data = json.loads(report.read_text()) if report.is_file() else {}
    return r.returncode, r.stdout + r.stderr, data


def cases_run(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def daemon(tiny_model_dir, tmp_path_factory):
    with daemon_app(tiny_model_dir, tmp_path_factory.mktemp("schemathesis")) as (daemon, server):
        yield daemon, server


def _run_and_report(daemon, tmp_path, capsys, max_examples: int, phases: str) -> int:
    _, server = daemon
    code, output, _report = run_schemathesis(server.url, tmp_path, max_examples, phases)
    cases = cases_run(output)
    with capsys.disabled():
        print(
            f"\nschemathesis -n {max_examples}: {cases} cases; exit {code}; "
            + " ".join(line.strip() for line in output.splitlines() if "generated" in line)
        )
    assert code == 0, output[-8000:]
    return cases


def test_schemathesis_short_run(daemon, tmp_path, capsys):
    """Random (fuzzing) cases only: about 200 requests, ~30 s."""
    assert _run_and_report(daemon, tmp_path, capsys, 10, "fuzzing") >= 150


@pytest.mark.slow
def test_schemathesis_long_run(daemon, tmp_path, capsys):
    """The schema's examples, its coverage cases (each bound and type just inside and outside) and random cases."""
    assert _run_and_report(daemon, tmp_path, capsys, 12, "examples,coverage,fuzzing") >= 1000


def test_the_published_schema_says_what_the_daemon_sends(daemon):
    """It said 422 where the app sends 400, documented streams as JSON only, and 405s carried no `Allow`."""
    import httpx

    _, server = daemon
    schema = httpx.get(server.url + "/openapi.json").json()
    ops = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert ops and all("422" not in op["responses"] and "400" in op["responses"] for _, _, op in ops)
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(chat)
    assert set(schema["paths"]["/api/events"]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}
    r = httpx.delete(server.url + "/v1/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "use POST" in r.json()["error"]["message"]
