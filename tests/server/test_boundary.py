"""The HTTP boundary (issue 14, items 1-3 and 11): loopback-only without a key however the host was given, the
Host header checked against the bound names (DNS rebinding), state-changing routes only from the daemon's own
origin (or listed ones) and only as JSON, body limits. Real uvicorn on 127.0.0.1, real clients."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest
from daemon_fixtures import daemon_app
from serving_fixtures import LiveServer, adapters_for

from penwright.errors import ServeError
from penwright.server.app import check_bind, create_app
from penwright.server.context import Services
from penwright.server.settings import ServerSettings

REBIND = "attacker.example"


@pytest.fixture(scope="module")
def daemon(tiny_model_dir, tmp_path_factory):
    """The daemon's app with two adapter versions: v1 (retired) and v2 (live)."""
    ads = adapters_for(tiny_model_dir, tmp_path_factory.getbasetemp())
    with daemon_app(tiny_model_dir, tmp_path_factory.mktemp("boundary")) as (daemon, server):
        v1 = daemon.registry.publish(ads["lighthouse"], base_model="builtin:tiny")
        v2 = daemon.registry.publish(ads["sailing"], base_model="builtin:tiny")
        daemon.registry.promote(v1.version)
        daemon.registry.promote(v2.version)
        daemon.services.sync_live()
        yield daemon, server


def state_changing_routes(server) -> list[tuple[str, str]]:
    """Every POST/PUT/PATCH/DELETE route the daemon publishes in its OpenAPI schema, with ids filled in."""
    schema = httpx.get(server.url + "/openapi.json").json()
    return [
        (method.upper(), path.replace("{job_id}", "1").replace("{version}", "1").replace("{model_id}", "m"))
        for path, ops in schema["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
    ]


# -- item 1: bind --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.20", "my-laptop.local", "::ffff:10.0.0.1", "127.1"])
def test_binding_beyond_loopback_needs_a_key_however_given(host):
    with pytest.raises(ServeError, match="api_key"):
        check_bind(ServerSettings(), host)
    check_bind(ServerSettings(api_key="k"), host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"])
def test_loopback_binds_need_no_key(host):
    check_bind(ServerSettings(), host)


@pytest.mark.parametrize("flag", ["0.0.0.0", "::"])
def test_serve_with_host_flag_refuses_without_key(example_project, flag):
    """`penwright serve --host 0.0.0.0` used to serve every route on every interface.

    (penwright.yaml said 127.0.0.1.)
    """
    r = subprocess.run(
        [sys.executable, "-m", "penwright", "serve", "--project", str(example_project), "--host", flag, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "api_key" in r.stderr and "other machines" in r.stderr
    assert not (example_project / ".penwright" / "daemon.json").exists()


def test_app_refuses_peers_off_this_machine_without_a_key(tiny_model_dir, daemon):
    """Even when uvicorn is pointed at another interface by hand, a keyless app answers only loopback peers."""
    d, _ = daemon
    ip = _own_non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    app = create_app(Services(settings=ServerSettings(), engine=d.services.engine, registry=d.registry))
    with LiveServer(app, host=ip) as server:
        r = httpx.get(server.url + "/api/status", headers={"Host": "127.0.0.1"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_loopback"
    assert "server.api_key" in r.json()["error"]["message"]


def _own_non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: only picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


# -- item 3: Host header (DNS rebinding) -----------------------------------------------------------------------------

READS = [
    "/api/status",
    "/v1/models",
    "/api/dashboard",
    "/api/jobs",
    "/api/adapters",
    "/api/lore/names",
    "/api/lore/lookup?name=Maren",
    "/api/events/history",
    "/",
    "/openapi.json",
]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    "host", [REBIND, f"{REBIND}:8765", "127.0.0.1.nip.io", "localhost.attacker.example", "10.0.0.5"]
)
def test_a_foreign_host_header_is_refused(daemon, path, host):
    _, server = daemon
    r = httpx.get(server.url + path, headers={"Host": host}, timeout=30)
    assert r.status_code == 421, r.text[:300]
    err = r.json()["error"]
    assert err["code"] == "host_not_allowed" and "127.0.0.1" in err["message"] and "localhost" in err["message"]


def test_completions_and_lore_refused_under_a_rebinding_name(daemon):
    _, server = daemon
    for method, path, body in [
        ("POST", "/v1/completions", {"prompt": "Maren", "max_tokens": 2}),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/api/lore/context", {"query": "Maren"}),
    ]:
        r = httpx.request(method, server.url + path, json=body, headers={"Host": f"{REBIND}:{server.port}"})
        assert r.status_code == 421, (path, r.text[:300])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "app.localhost"])
def test_local_names_are_answered(daemon, host):
    _, server = daemon
    r = httpx.get(server.url + "/api/status", headers={"Host": f"{host}:{server.port}"})
    assert r.status_code == 200, r.text[:300]


def test_a_request_without_host_is_refused(daemon):
    _, server = daemon
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /api/status HTTP/1.0\r\n\r\n")
        head = s.recv(200).decode()
    assert head.startswith("HTTP/1.1 421"), head


# -- item 2: cross-site request forgery ------------------------------------------------------------------------------

CROSS = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost"},
]


def test_cross_origin_posts_change_nothing(daemon):
    d, server = daemon
    live = d.registry.live().version
    routes = state_changing_routes(server)
    assert {
        "/api/train",
        "/api/adapters/1/rollback",
        "/api/adapters/1/promote",
        "/api/jobs/1/cancel",
        "/api/feedback",
        "/v1/completions",
    } <= {p for _, p in routes}
    for method, path in routes:
        for headers in CROSS:
            for kw in (
                {},
                {"content": b"{}", "headers": {"content-type": "text/plain"}},
                {"json": {"accepted": True, "preset": "fast"} if "feedback" not in path else {"accepted": True}},
            ):
                r = httpx.request(method, server.url + path, **{**kw, "headers": {**kw.get("headers", {}), **headers}})
                assert r.status_code == 403, (method, path, headers, r.text[:300])
                assert r.json()["error"]["code"] == "origin_not_allowed"
    assert d.jobs.list() == [] and d.registry.live().version == live
    assert not d.paths.feedback.exists()


def test_same_origin_and_listed_origins_may_change_state(tiny_model_dir, tmp_path):
    with daemon_app(tiny_model_dir, tmp_path, cors_origins=["http://localhost:3000"]) as (d, server):
        own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        r = httpx.post(server.url + "/api/feedback", json={"accepted": True, "text": "ok"}, headers=own)
        assert r.status_code == 200, r.text
        listed = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "cross-site"}
        assert httpx.post(server.url + "/api/feedback", json={"accepted": False}, headers=listed).status_code == 200
        other = {"Origin": "http://localhost:3001", "Sec-Fetch-Site": "same-site"}
        assert httpx.post(server.url + "/api/feedback", json={"accepted": False}, headers=other).status_code == 403
        assert len(d.paths.feedback.read_text().splitlines()) == 2


def test_form_and_text_bodies_are_refused_even_without_origin(daemon):
    d, server = daemon
    for ctype, body in [
        ("text/plain", b'{"preset": "fast"}'),
        ("application/x-www-form-urlencoded", b"preset=fast"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ]:
        r = httpx.post(server.url + "/api/train", content=body, headers={"content-type": ctype})
        assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    assert d.jobs.list() == []


def test_retrain_now_twice_queues_one_job(daemon):
    d, server = daemon
    first = httpx.post(server.url + "/api/train", json={}).json()["job"]
    again = httpx.post(server.url + "/api/train", json={}).json()["job"]
    assert first["id"] == again["id"] and len(d.jobs.with_status("queued")) == 1
    d.cancel(first["id"])


def test_key_is_required_on_every_route_but_health_and_the_static_page(tiny_model_dir, tmp_path):
    with daemon_app(tiny_model_dir, tmp_path, api_key="s3cret") as (_, server):
        for path in ("/api/status", "/api/dashboard", "/v1/models", "/api/events/history", "/openapi.json"):
            r = httpx.get(server.url + path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            ok = httpx.get(server.url + path, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200, path
        for path in ("/health", "/", "/dashboard/dashboard.js"):
            assert httpx.get(server.url + path).status_code == 200, path
        r = httpx.post(
            server.url + "/api/train",
            json={},
            headers={"Origin": "http://evil.example", "Authorization": "Bearer s3cret"},
        )
        assert r.status_code == 403  # the key does not make a foreign page's request acceptable


# -- item 11: body limits ---------------------------------------------------------------------------------------------


def test_oversized_bodies_are_refused_before_they_are_read(daemon):
    d, server = daemon
    r = httpx.post(
        server.url + "/api/feedback",
        content=b'{"accepted": true, "text": "' + b"x" * (20 * 2**20) + b'"}',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "65,536 bytes" in r.json()["error"]["message"]
    assert not d.paths.feedback.exists()


def test_a_chunked_body_is_counted_too(daemon):
    _, server = daemon

    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    r = httpx.post(
        server.url + "/v1/completions", content=chunks(), headers={"content-type": "application/json"}, timeout=60
    )
    assert r.status_code == 413 and "1,048,576" in r.json()["error"]["message"]


def test_a_prompt_at_the_limit_is_answered_in_seconds(daemon):
    """A 5 MB prompt took 37 s before it was cut; now the largest accepted one (1 MiB) is fitted quickly."""
    import time

    _, server = daemon
    t0 = time.monotonic()
    r = httpx.post(
        server.url + "/v1/completions",
        json={
            "model": "penwright:base",
            "prompt": "The lamp. " * 100_000,
            "max_tokens": 2,
            "penwright": {"lore": False},
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text[:300]
    assert time.monotonic() - t0 < 20
