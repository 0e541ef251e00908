"""Every bad request gets a 4xx that says what was wrong (issue 14, items 4, 8-11): a table of them against the
daemon's whole app on a real uvicorn. None may answer 5xx, each names the field or limit, and the daemon still
serves afterwards. Printed at the end: how many cases, how many 4xx, how many 5xx."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from daemon_fixtures import daemon_app

BIG = 2**70
C, CH = "/v1/completions", "/v1/chat/completions"
JSON = {"content-type": "application/json"}


def comp(**fields):
    return {"model": "penwright:base", "prompt": "The lamp", "max_tokens": 2, **fields}


def chat(**fields):
    return {"model": "penwright:base", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2, **fields}


def msgs(*messages, **fields):
    return chat(messages=list(messages), **fields)


# (method, path, json body or raw bytes, extra headers, expected status, words the message must contain)
CASES = [
    # -- item 8: token-id prompts ---------------------------------------------------------------------------
    ("POST", C, comp(prompt=[999999999]), None, 400, "does not have"),
    ("POST", C, comp(prompt=[1, 2, 999999999]), None, 400, "prompt[2]"),
    ("POST", C, comp(prompt=[-5]), None, 400, "greater than or equal to 0"),
    ("POST", C, comp(prompt=[BIG]), None, 400, "less than or equal"),
    ("POST", C, comp(prompt=[2**31]), None, 400, "less than or equal"),
    ("POST", C, comp(prompt=[]), None, 400, "empty list of token ids"),
    ("POST", C, comp(prompt=[True, False]), None, 400, "should be a valid integer"),
    ("POST", C, comp(prompt=[1.5]), None, 400, "prompt"),
    ("POST", C, comp(prompt=[1, "a"]), None, 400, "prompt"),
    ("POST", C, comp(prompt=[[1, 2]]), None, 400, "prompt"),
    ("POST", C, comp(prompt=["a", "b"]), None, 400, "one prompt per request"),
    ("POST", C, comp(prompt=None), None, 400, "prompt"),
    ("POST", C, comp(prompt=5), None, 400, "prompt"),
    ("POST", C, comp(prompt={"text": "x"}), None, 400, "prompt"),
    # -- item 9: sampling values that overflow to NaN, and other ranges ---------------------------------------
    ("POST", C, comp(temperature=1e-300), None, 400, "greedy"),
    ("POST", C, comp(temperature=5e-324), None, 400, "greedy"),
    ("POST", C, comp(temperature=1e-4), None, 400, "at least 0.001"),
    ("POST", C, comp(temperature=-1), None, 400, "temperature"),
    ("POST", C, comp(temperature=2.5), None, 400, "temperature"),
    ("POST", C, comp(temperature="hot"), None, 400, "temperature"),
    ("POST", C, comp(temperature=True), None, 400, "temperature"),
    ("POST", C, comp(top_p=5e-324), None, 400, "top_p must be at least"),
    ("POST", C, comp(top_p=1e-9), None, 400, "top_p"),
    ("POST", C, comp(top_p=0), None, 400, "top_p"),
    ("POST", C, comp(top_p=1.5), None, 400, "top_p"),
    ("POST", C, comp(top_p=False), None, 400, "top_p"),
    ("POST", C, comp(repetition_penalty=5e-324), None, 400, "repetition_penalty"),
    ("POST", C, comp(repetition_penalty=0), None, 400, "repetition_penalty"),
    ("POST", C, comp(repetition_penalty=-1), None, 400, "repetition_penalty"),
    ("POST", C, comp(repetition_penalty=1e308), None, 400, "repetition_penalty"),
    ("POST", C, comp(frequency_penalty=3), None, 400, "frequency_penalty"),
    ("POST", C, comp(frequency_penalty=-1e308), None, 400, "frequency_penalty"),
    ("POST", C, comp(presence_penalty=9), None, 400, "presence_penalty"),
    ("POST", C, comp(presence_penalty="x"), None, 400, "presence_penalty"),
    ("POST", C, comp(min_p=2), None, 400, "min_p"),
    ("POST", C, comp(min_p=-0.1), None, 400, "min_p"),
    ("POST", C, comp(top_k=-2), None, 400, "top_k"),
    ("POST", C, comp(top_k=True), None, 400, "top_k"),
    ("POST", C, b'{"prompt": "x", "temperature": NaN}', JSON, 400, "temperature"),
    ("POST", C, b'{"prompt": "x", "top_p": Infinity}', JSON, 400, "top_p"),
    ("POST", C, b'{"prompt": "x", "repetition_penalty": -Infinity}', JSON, 400, "repetition_penalty"),
    # -- item 10: out-of-range integers, booleans as numbers, bad text ---------------------------------------
    ("POST", C, comp(max_tokens=True), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens=False), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens=BIG), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens=0), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens=-1), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens=1.5), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens="16"), None, 400, "max_tokens"),
    ("POST", C, comp(max_tokens=100000), None, 400, "context"),
    ("POST", C, comp(seed=BIG), None, 400, "seed"),
    ("POST", C, comp(seed=-BIG), None, 400, "seed"),
    ("POST", C, comp(seed=True), None, 400, "seed"),
    ("POST", C, comp(seed="1"), None, 400, "seed"),
    ("POST", C, comp(n=2), None, 400, "n"),
    ("POST", C, comp(n=BIG), None, 400, "n"),
    ("POST", C, comp(logprobs=BIG), None, 400, "logprobs"),
    ("POST", C, comp(logprobs=True), None, 400, "logprobs"),
    ("POST", C, comp(logprobs=21), None, 400, "logprobs"),
    ("POST", C, comp(echo="yes"), None, 400, "echo"),
    ("POST", C, comp(stream="yes"), None, 400, "stream"),
    ("POST", C, comp(stream=1), None, 400, "stream"),
    ("POST", C, comp(stream_options={"include_usage": "yes"}), None, 400, "include_usage"),
    ("POST", C, comp(stream_options=[]), None, 400, "stream_options"),
    ("POST", C, comp(stop=["a"] * 9), None, 400, "at most 8"),
    ("POST", C, comp(stop=5), None, 400, "stop"),
    ("POST", C, comp(stop=[1, 2]), None, 400, "stop"),
    ("POST", C, comp(stop="\ud800"), None, 400, "lone UTF-16 surrogate"),
    ("POST", C, comp(prompt="\ud800"), None, 400, "lone UTF-16 surrogate"),
    ("POST", C, comp(prompt="ok \udfff ok"), None, 400, "prompt"),
    ("POST", C, comp(prompt=["\ud83d"]), None, 400, "surrogate"),
    ("POST", C, comp(suffix="\ud800"), None, 400, "suffix"),
    ("POST", C, comp(suffix=5), None, 400, "suffix"),
    ("POST", C, comp(model="\ud800"), None, 400, "model"),
    ("POST", C, comp(model=5), None, 400, "model"),
    ("POST", C, comp(model="x" * 300), None, 400, "model"),
    ("POST", C, comp(model="gpt-4"), None, 404, "gpt-4"),
    ("POST", C, comp(model="penwright@v999"), None, 404, "v999"),
    ("POST", C, comp(model=f"penwright@v{BIG}"), None, 404, "penwright"),
    ("POST", C, comp(model="penwright@v-1"), None, 404, "penwright"),
    ("POST", C, comp(penwright={"adapter_scale": False}), None, 400, "adapter_scale"),
    ("POST", C, comp(penwright={"adapter_scale": True}), None, 400, "adapter_scale"),
    ("POST", C, comp(penwright={"adapter_scale": 3}), None, 400, "adapter_scale"),
    ("POST", C, comp(penwright={"adapter_scale": -0.5}), None, 400, "adapter_scale"),
    ("POST", C, comp(penwright={"chapter": BIG}), None, 400, "chapter"),
    ("POST", C, comp(penwright={"chapter": -1}), None, 400, "chapter"),
    ("POST", C, comp(penwright={"chapter": "3"}), None, 400, "chapter"),
    ("POST", C, comp(penwright={"lore": "no"}), None, 400, "lore"),
    ("POST", C, comp(penwright={"stop_at": "chapter"}), None, 400, "stop_at"),
    ("POST", C, comp(penwright=[]), None, 400, "penwright"),
    ("POST", C, comp(penwright="on"), None, 400, "penwright"),
    ("POST", C, comp(**{"\ud800": 1}), None, 400, "surrogate"),
    # -- item 10 (chat): content parts, roles, surrogates -------------------------------------------------------
    ("POST", CH, msgs({"role": "user", "content": [{"type": "text", "text": 5}]}), None, 400, "text"),
    ("POST", CH, msgs({"role": "user", "content": [{"type": "text", "text": ["a"]}]}), None, 400, "content"),
    ("POST", CH, msgs({"role": "user", "content": [{"text": "no type"}]}), None, 400, "type"),
    ("POST", CH, msgs({"role": "user", "content": ["plain string part"]}), None, 400, "content"),
    ("POST", CH, msgs({"role": "user", "content": [5]}), None, 400, "content"),
    ("POST", CH, msgs({"role": "user", "content": 5}), None, 400, "content"),
    ("POST", CH, msgs({"role": "user", "content": {"text": "x"}}), None, 400, "content"),
    ("POST", CH, msgs({"role": "user", "content": "\ud800"}), None, 400, "surrogate"),
    ("POST", CH, msgs({"role": "user", "content": [{"type": "text", "text": "\udc00"}]}), None, 400, "surrogate"),
    ("POST", CH, msgs({"role": "wizard", "content": "x"}), None, 400, "role"),
    ("POST", CH, msgs({"role": 5, "content": "x"}), None, 400, "role"),
    ("POST", CH, msgs({"content": "x"}), None, 400, "role"),
    ("POST", CH, msgs("just a string"), None, 400, "messages"),
    ("POST", CH, msgs(5), None, 400, "messages"),
    ("POST", CH, msgs(), None, 400, "messages"),
    ("POST", CH, chat(messages=None), None, 400, "messages"),
    ("POST", CH, chat(messages="Hello"), None, 400, "messages"),
    ("POST", CH, chat(messages={"role": "user"}), None, 400, "messages"),
    ("POST", CH, {"model": "penwright:base"}, None, 400, "messages"),
    ("POST", CH, chat(max_completion_tokens=True), None, 400, "max_completion_tokens"),
    ("POST", CH, chat(max_completion_tokens=BIG), None, 400, "does not fit"),
    ("POST", CH, chat(max_completion_tokens=0), None, 400, "max_completion_tokens"),
    ("POST", CH, chat(max_tokens=True), None, 400, "max_tokens"),
    ("POST", CH, chat(temperature=1e-300), None, 400, "greedy"),
    ("POST", CH, chat(top_p=5e-324), None, 400, "top_p"),
    ("POST", CH, chat(repetition_penalty=5e-324), None, 400, "repetition_penalty"),
    ("POST", CH, chat(seed=BIG), None, 400, "seed"),
    ("POST", CH, chat(logprobs=1), None, 400, "logprobs"),
    ("POST", CH, chat(top_logprobs=BIG), None, 400, "top_logprobs"),
    ("POST", CH, chat(top_logprobs=True), None, 400, "top_logprobs"),
    ("POST", CH, chat(penwright={"adapter_scale": False}), None, 400, "adapter_scale"),
    ("POST", CH, chat(model="nope"), None, 404, "nope"),
    ("POST", CH, chat(stop=["\ud800"]), None, 400, "surrogate"),
    # -- malformed bodies -------------------------------------------------------------------------------------
    ("POST", C, b'{"prompt": ', JSON, 400, "not valid JSON"),
    ("POST", C, b"[1, 2]", JSON, 400, "body"),
    ("POST", C, b'"just a string"', JSON, 400, "body"),
    ("POST", C, b"null", JSON, 400, "body"),
    ("POST", C, b"\xff\xfe\x00", JSON, 400, "not UTF-8"),
    ("POST", C, b'{"prompt": "\\ud800"}', JSON, 400, "surrogate"),
    ("POST", CH, b'{"messages": [{"role": "user", "content": "\\udfff"}]}', JSON, 400, "surrogate"),
    ("POST", CH, b"{}", JSON, 400, "messages"),
    ("POST", CH, b"", JSON, 400, "body"),
    # -- item 11 and the JSON-only rule: size and content type ------------------------------------------------------
    ("POST", C, {"prompt": "x" * (2 * 1024 * 1024)}, None, 413, "1,048,576 bytes"),
    ("POST", CH, {"messages": [{"role": "user", "content": "y" * (1100 * 1024)}]}, None, 413, "limit"),
    ("POST", "/api/feedback", {"accepted": True, "text": "z" * (20 * 1024 * 1024)}, None, 413, "65,536 bytes"),
    ("POST", "/api/feedback", {"accepted": True, "text": "z" * 70_000}, None, 413, "limit"),
    ("POST", "/api/train", {"overrides": {"x": "y" * 100_000}}, None, 413, "limit"),
    ("POST", "/api/lore/context", {"query": "q" * (2 * 1024 * 1024)}, None, 413, "limit"),
    ("POST", C, b'{"prompt": "x"}', {"content-type": "text/plain"}, 415, "application/json"),
    ("POST", C, b"prompt=x", {"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ("POST", C, b'{"prompt": "x"}', {"content-type": "multipart/form-data; boundary=x"}, 415, "application/json"),
    ("POST", "/api/train", b"{}", {"content-type": "text/plain"}, 415, "Content-Type: application/json"),
    ("POST", "/api/train", b"", {"content-type": "text/plain"}, 415, "application/json"),
    ("POST", "/api/adapters/1/rollback", b"x", {"content-type": "text/plain"}, 415, "application/json"),
    ("POST", "/api/feedback", b'{"accepted": true}', {"content-type": "text/plain;charset=UTF-8"}, 415, "JSON"),
    # -- item 4: presets only by name or a YAML file inside the project -----------------------------------------------
    ("POST", "/api/train", {"preset": "/etc/passwd"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "/etc/hostname"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "../../../../etc/passwd"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "/no/such/file.yaml"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "~/.bashrc"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "manuscript/01-the-light.md"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "/proc/self/environ"}, None, 400, "inside the project"),
    ("POST", "/api/train", {"preset": "no_such_preset"}, None, 400, "unknown training preset"),
    ("POST", "/api/train", {"preset": "fast\ud800"}, None, 400, "preset"),
    ("POST", "/api/train", {"preset": ""}, None, 400, "preset"),
    ("POST", "/api/train", {"preset": 5}, None, 400, "preset"),
    ("POST", "/api/train", {"preset": "x" * 300}, None, 400, "preset"),
    ("POST", "/api/train", {"overrides": []}, None, 400, "overrides"),
    ("POST", "/api/train", {"overrides": {"rank": "big"}}, None, 400, "rank"),
    ("POST", "/api/train", {"overrides": {"learning_rate": -1}}, None, 400, "learning_rate"),
    ("POST", "/api/train", {"overrides": {"no_such_field": 1}}, None, 400, "no_such_field"),
    ("POST", "/api/train", {"unknown": 1}, None, 400, "unknown"),
    ("POST", "/api/train", b"[]", JSON, 400, "body"),
    # -- item 10: ids, versions and limits -------------------------------------------------------------------------
    ("GET", f"/api/jobs/{BIG}", None, None, 400, "less than or equal"),
    ("GET", "/api/jobs/0", None, None, 400, "greater than or equal to 1"),
    ("GET", "/api/jobs/-3", None, None, 400, "job_id"),
    ("GET", "/api/jobs/abc", None, None, 400, "job_id"),
    ("GET", "/api/jobs/1.5", None, None, 400, "job_id"),
    ("GET", "/api/jobs/424242", None, None, 404, "no training job 424242"),
    ("GET", f"/api/jobs?limit={BIG}", None, None, 400, "limit"),
    ("GET", "/api/jobs?limit=0", None, None, 400, "limit"),
    ("GET", "/api/jobs?limit=-1", None, None, 400, "limit"),
    ("GET", "/api/jobs?limit=x", None, None, 400, "limit"),
    ("POST", f"/api/jobs/{BIG}/cancel", None, None, 400, "job_id"),
    ("POST", "/api/jobs/424242/cancel", None, None, 404, "424242"),
    ("POST", f"/api/adapters/{BIG}/promote", None, None, 400, "version"),
    ("POST", f"/api/adapters/{BIG}/rollback", None, None, 400, "version"),
    ("POST", "/api/adapters/0/rollback", None, None, 400, "version"),
    ("POST", "/api/adapters/-1/promote", None, None, 400, "version"),
    ("POST", "/api/adapters/v1/promote", None, None, 400, "version"),
    ("POST", "/api/adapters/424242/promote", None, None, 404, "v424242"),
    ("POST", "/api/adapters/424242/rollback", None, None, 404, "v424242"),
    ("GET", "/api/runs/..%2F..%2Fetc/log", None, None, 404, "lists every route"),
    ("GET", "/api/runs/a%20b/log", None, None, 400, "run_id"),
    ("GET", f"/api/runs/{'r' * 200}/log", None, None, 400, "run_id"),
    ("GET", f"/api/events/history?since={BIG}", None, None, 400, "since"),
    ("GET", "/api/events/history?since=x", None, None, 400, "since"),
    ("GET", f"/api/events?since={BIG}", None, None, 400, "since"),
    ("GET", "/api/lore/search?q=x&k=0", None, None, 400, "k"),
    ("GET", f"/api/lore/search?q=x&k={BIG}", None, None, 400, "k"),
    ("GET", "/api/lore/search?q=", None, None, 400, "q"),
    ("GET", "/api/lore/lookup?name=", None, None, 400, "name"),
    # -- feedback -----------------------------------------------------------------------------------------------------
    ("POST", "/api/feedback", {"text": "x"}, None, 400, "accepted"),
    ("POST", "/api/feedback", {"accepted": "yes"}, None, 400, "accepted"),
    ("POST", "/api/feedback", {"accepted": 1}, None, 400, "accepted"),
    ("POST", "/api/feedback", {"accepted": True, "text": 5}, None, 400, "text"),
    ("POST", "/api/feedback", {"accepted": True, "text": "t" * 20_001}, None, 400, "text"),
    ("POST", "/api/feedback", {"accepted": True, "uri": "file:///x\udc00"}, None, 400, "surrogate"),
    ("POST", "/api/feedback", {"accepted": True, "text": "\ud800"}, None, 400, "unicode"),
    # -- methods and paths -----------------------------------------------------------------------------------------
    ("GET", C, None, None, 405, "POST"),
    ("PUT", CH, {}, None, 405, "POST"),
    ("DELETE", "/api/jobs/1", None, None, 405, "GET"),
    ("POST", "/api/status", {}, None, 405, "GET"),
    ("GET", "/api/train", None, None, 405, "POST"),
    ("GET", "/v1/nothing-here", None, None, 404, "lists every route"),
]


@pytest.fixture(scope="module")
def daemon(tiny_model_dir, tmp_path_factory):
    with daemon_app(tiny_model_dir, tmp_path_factory.mktemp("bad-requests")) as (daemon, server):
        yield daemon, server


def send(server, method, path, body, headers):
    kw = (
        {"content": body}
        if isinstance(body, bytes)
        else {}
        if body is None
        else {"content": json.dumps(body).encode("utf-8", "surrogatepass"), "headers": JSON}
    )
    if headers:
        kw["headers"] = {**kw.get("headers", {}), **headers}
    return httpx.request(method, server.url + path, timeout=60, **kw)


def test_the_table_has_every_kind_of_case():
    assert len(CASES) >= 150


@pytest.mark.parametrize(
    "method,path,body,headers,status,needle", CASES, ids=[f"{i:03d}-{c[0]}-{c[1][:30]}" for i, c in enumerate(CASES)]
)
def test_bad_request_answers_4xx_saying_what_to_change(daemon, method, path, body, headers, status, needle):
    _, server = daemon
    r = send(server, method, path, body, headers)
    assert r.status_code == status, r.text[:500]
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert needle.lower() in err["message"].lower(), err
    if status == 405:
        assert needle in r.headers["allow"]


def test_no_bad_request_reaches_the_feedback_file_or_the_queue(daemon):
    d, server = daemon
    for method, path, body, headers, _status, _needle in CASES:
        if path.startswith(("/api/feedback", "/api/train")):
            send(server, method, path, body, headers)
    assert not d.paths.feedback.exists() or d.paths.feedback.stat().st_size == 0
    assert d.jobs.list() == []


def test_still_serving_after_every_bad_request_and_figures(daemon, capsys):
    _, server = daemon
    statuses = [send(server, *case[:4]).status_code for case in CASES]
    ok = httpx.post(server.url + C, json=comp(max_tokens=3, temperature=0), timeout=60)
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] is not None
    with capsys.disabled():
        print(
            f"\nbad requests: {len(statuses)} cases, {sum(400 <= s < 500 for s in statuses)} answered 4xx, "
            f"{sum(s >= 500 for s in statuses)} answered 5xx"
        )
    assert all(400 <= s < 500 for s in statuses)


def test_bad_requests_in_a_batch_fail_no_innocent_request(daemon):
    """Item 8: bad token ids and NaN-making sampling values, sent at once with good requests, fail only themselves."""
    _, server = daemon
    bad = [
        comp(prompt=[999999999]),
        comp(temperature=1e-300),
        comp(top_p=5e-324),
        comp(repetition_penalty=5e-324),
        comp(prompt=[-5]),
        comp(prompt=[BIG]),
    ]
    results: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body = bad[i % len(bad)] if i % 4 == 0 else comp(max_tokens=4, seed=i)
        r = httpx.post(server.url + C, json=body, timeout=120)
        with lock:
            results.append((i % 4 != 0, r.status_code))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    innocent = [s for good, s in results if good]
    assert len(results) == 200 and len(innocent) == 150
    assert innocent.count(200) == 150, sorted(set(innocent))
    assert all(s == 400 for good, s in results if not good)
