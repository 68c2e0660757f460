"""Server hardening (issue 8): bad input is a JSON 4xx, failures are fast JSON 5xx, a slow
request blocks no other, the circuit breaker, limits, and secrets kept out of logs."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import pytest
from server_utils import (
    GateScorer,
    ServerThread,
    SwitchScorer,
    start_cli_server,
    stop,
    wait_healthy,
)

from openrlhf_reward.scorers import get_scorer
from openrlhf_reward.server.batcher import DynamicBatcher, is_backend_unavailable
from openrlhf_reward.server.breaker import CircuitBreaker, CircuitOpenError

KEY = "hardening-key-456"
AUTH = {"Authorization": f"Bearer {KEY}"}
REQ = {"id": "c1", "type": "style", "text": "Lowercase.", "check": {"kind": "lowercase"}}
GOOD = {"query": ["P: hello there"], "prompts": ["P: "], "labels": [{"requirements": [REQ]}]}


def post(url: str, body, headers=AUTH, **kw) -> httpx.Response:
    kw.setdefault("timeout", 60)
    if isinstance(body, (bytes, str)):
        return httpx.post(url + "/get_reward", content=body, headers=headers, **kw)
    return httpx.post(url + "/get_reward", json=body, headers=headers, **kw)


@pytest.fixture(scope="module")
def rules_srv():
    with ServerThread(get_scorer("rules"), "rules", api_key=KEY, max_body_bytes=4 * 1024 * 1024) as srv:
        yield srv


# --------------------------------------------------------------------------- no request blocks another


def test_health_answers_while_a_slow_request_is_scored():
    scorer = GateScorer()
    with ServerThread(scorer, "gate", require_requirements=False) as srv:
        done = threading.Event()
        result: dict = {}

        def slow():
            result["r"] = post(srv.url, {"query": ["p x"], "prompts": ["p "]}, headers={}, timeout=120)
            done.set()

        t = threading.Thread(target=slow)
        t.start()
        try:
            assert scorer.entered.wait(60)
            h = httpx.get(srv.url + "/health", timeout=60)
            m = httpx.get(srv.url + "/metrics", timeout=60)
            # /health and /metrics answered while the slow request is still being scored
            assert not done.is_set()
            assert h.status_code == 200 and h.json()["status"] == "ok"
            assert h.json()["in_flight"] == 1
            assert m.json()["requests"]["in_flight"] == 1
        finally:
            scorer.release.set()
            t.join(60)
        assert result["r"].status_code == 200


def test_parsing_runs_off_the_event_loop(monkeypatch):
    """A request whose parsing is slow (a test double for pathological text) blocks no other."""
    import openrlhf_reward.server.app as app_module

    entered, release = threading.Event(), threading.Event()
    real = app_module.parse_reward_request

    def slow_parse(body, options):
        if body.get("slow"):
            entered.set()
            assert release.wait(120)
        return real(body, options)

    monkeypatch.setattr(app_module, "parse_reward_request", slow_parse)
    with ServerThread(get_scorer("rules"), "rules") as srv:
        done = threading.Event()
        result: dict = {}

        def slow():
            result["r"] = post(srv.url, {**GOOD, "slow": True}, headers={}, timeout=120)
            done.set()

        t = threading.Thread(target=slow)
        t.start()
        try:
            assert entered.wait(60)
            assert httpx.get(srv.url + "/health", timeout=60).json()["status"] == "ok"
            assert post(srv.url, GOOD, headers={}).status_code == 200  # another request is served
            assert not done.is_set()
        finally:
            release.set()
            t.join(60)
        assert result["r"].status_code == 200


def test_degenerate_rates_in_extra_logs_and_metrics(rules_srv):
    m0 = httpx.get(rules_srv.url + "/metrics", headers=AUTH, timeout=60).json()["degenerate"]
    body = {"query": ["P:   <|im_end|>", "P: fine", "Q: elsewhere"], "prompts": ["P:", "P:", "P:"],
            "labels": [{"requirements": [REQ, {**REQ, "id": "c2", "check": None}]}] * 3}
    r = post(rules_srv.url, body)
    assert r.status_code == 200
    logs = r.json()["extra_logs"]
    assert logs["blank_response"] == pytest.approx(1 / 3)
    assert logs["recovery_fallback"] == pytest.approx(1 / 3)
    assert logs["unscorable_requirements"] == pytest.approx(0.5)
    assert logs["judge_unparsed"] == 0.0
    m1 = httpx.get(rules_srv.url + "/metrics", headers=AUTH, timeout=60).json()["degenerate"]
    assert m1["blank_responses"] - m0["blank_responses"] == 1
    assert m1["recovery_fallbacks"] - m0["recovery_fallbacks"] == 1
    assert m1["unscorable_requirements"] - m0["unscorable_requirements"] == 3
    assert m1["samples"] - m0["samples"] == 3


# --------------------------------------------------------------------------- bad input: JSON 4xx naming the field


def _label_body(label) -> dict:
    return {"query": ["P: hello"], "prompts": ["P: "], "labels": [label]}


BAD_LABELS = [
    ("kind as a list", {"requirements": [{**REQ, "check": {"kind": ["lowercase"]}}]}),
    ("kind as a dict", {"requirements": [{**REQ, "check": {"kind": {"a": 1}}}]}),
    ("check as a list", {"requirements": [{**REQ, "check": ["lowercase"]}]}),
    ("5000-digit integer in a label string", '{"requirements": [], "x": ' + "9" * 5000 + "}"),
    ("deep nesting in a label string", "[" * 100_000 + "]" * 100_000),
    ("deep nesting in requirements", {"requirements": [{**REQ, "check": {"kind": "lowercase", "x": [[[[[]]]]]}}]}),
    ("IFEval kwargs of the wrong type", {"instruction_id_list": ["length_constraints:number_words"],
                                        "kwargs": [{"num_words": "abc", "relation": "at least"}]}),
    ("IFEval kwargs not a list", {"instruction_id_list": ["punctuation:no_comma"], "kwargs": "x"}),
    ("IFEval unknown id", {"instruction_id_list": ["no:such_instruction"], "kwargs": [{}]}),
]


@pytest.mark.parametrize("label", [b for _, b in BAD_LABELS], ids=[n for n, _ in BAD_LABELS])
def test_bad_labels_are_json_4xx_naming_the_field(rules_srv, label):
    r = post(rules_srv.url, _label_body(label))
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["field"].startswith("labels[0]"), body
    assert body["error"]


def test_lone_surrogate_in_a_requirement_id(rules_srv):
    # raw JSON text with an escaped lone surrogate: valid JSON, not encodable as UTF-8
    raw = json.dumps(_label_body({"requirements": [{**REQ, "id": "\ud800"}, {**REQ, "id": "\ud800"}]}))
    assert "\\ud800" in raw
    r = post(rules_srv.url, raw.encode(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "labels[0].requirements"
    # a single one is scored, and the answer is valid JSON
    raw = json.dumps(_label_body({"requirements": [{**REQ, "id": "\ud800"}]}))
    r = post(rules_srv.url, raw.encode(), headers={**AUTH, "content-type": "application/json"}, )
    assert r.status_code == 200 and len(r.json()["rewards"]) == 1


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"query": [' + b"9" * 5000 + b"]}",
    b"\xff\xfe garbage",
    b'{"query": ["\\ud800"], "prompts": ["\\udc00"], "labels": [null]}',
])
def test_bad_bodies_are_json_4xx(rules_srv, raw):
    r = post(rules_srv.url, raw, headers={**AUTH, "content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["field"] is not None


def test_unexpected_errors_are_json_500_with_an_error_id(rules_srv, caplog):
    metrics = rules_srv.app.state.metrics
    original = metrics.snapshot

    def broken(*a, **k):
        raise RuntimeError("metrics snapshot broke")

    metrics.snapshot = broken
    try:
        with caplog.at_level(logging.ERROR, logger="openrlhf_reward.server"):
            r = httpx.get(rules_srv.url + "/metrics", headers=AUTH, timeout=60)
    finally:
        metrics.snapshot = original
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    error_id = r.json()["error_id"]
    assert "Traceback" not in r.text and "metrics snapshot broke" not in r.text
    logged = [rec for rec in caplog.records if error_id in rec.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log, under the id
    m = httpx.get(rules_srv.url + "/metrics", headers=AUTH, timeout=60).json()
    assert m["requests"]["unexpected_errors"] >= 1


# --------------------------------------------------------------------------- fail fast, circuit breaker


@pytest.mark.parametrize("error, calls", [
    # unreachable: one batch call, no per-sample retries
    (ConnectionRefusedError("judge endpoint refused the connection"), [8]),
    # failing every sample: the batch, then two single samples failing the same way
    (RuntimeError("backend exploded"), [8, 1, 1]),
], ids=["unreachable-not-retried-per-sample", "failing-every-sample-stops-isolating-early"])
def test_a_failing_backend_is_not_isolated_sample_by_sample(error, calls):
    scorer = SwitchScorer(error)
    b = DynamicBatcher(scorer.score, max_batch_size=8, max_wait_ms=50)
    futures = b.submit_many(list(range(8)))
    for f in futures:
        with pytest.raises(type(error)):
            f.result(30)
    b.close()
    assert scorer.calls == calls


def test_backend_unavailable_classification():
    import openai

    assert is_backend_unavailable(ConnectionRefusedError())
    assert is_backend_unavailable(CircuitOpenError(1.0, "x"))
    try:
        try:
            raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:1"))
        except Exception as e:
            raise RuntimeError("judge endpoint failed after 4 attempt(s)") from e
    except RuntimeError as wrapped:
        assert is_backend_unavailable(wrapped)
    assert not is_backend_unavailable(ValueError("bad sample"))


def test_generic_failures_open_the_breaker_after_the_threshold():
    # fail-fast mode (--ride-through-s 0): an open breaker answers 503 at once
    scorer = SwitchScorer(RuntimeError("backend exploded"))
    with ServerThread(scorer, "switch", require_requirements=False, breaker_threshold=2,
                      breaker_cooldown_s=30.0, ride_through_s=0) as srv:
        body = {"query": ["p x"], "prompts": ["p "]}
        r1, r2 = post(srv.url, body, headers={}), post(srv.url, body, headers={})
        assert (r1.status_code, r2.status_code) == (500, 500) and r1.json()["error_id"] != r2.json()["error_id"]
        r3 = post(srv.url, body, headers={})
        assert r3.status_code == 503 and int(r3.headers["Retry-After"]) >= 1
        assert len(scorer.calls) == 2
        assert httpx.get(srv.url + "/health", timeout=60).json()["status"] == "degraded"


def test_circuit_breaker_states():
    now = [0.0]
    br = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    br.acquire()
    br.record_failure("e1")
    assert br.state == "closed"
    br.record_failure("e2")
    assert br.state == "open" and br.retry_after() == 10
    with pytest.raises(CircuitOpenError):
        br.acquire()
    now[0] = 10.0
    assert br.state == "half-open"
    br.acquire()  # the probe
    with pytest.raises(CircuitOpenError):
        br.acquire()  # only one probe at a time
    br.record_failure("still down")
    assert br.state == "open" and br.retry_after() == 20  # cool-down doubled
    now[0] = 30.0
    br.acquire()
    br.record_success()
    assert br.state == "closed" and br.reason == ""
    br.record_failure("refused", unavailable=True)
    assert br.state == "open"


def test_failing_backend_opens_the_breaker_then_recovers():
    scorer = SwitchScorer(ConnectionRefusedError("judge endpoint refused the connection"))
    with ServerThread(scorer, "switch", require_requirements=False, breaker_threshold=2,
                      breaker_cooldown_s=1.0, ride_through_s=0) as srv:
        body = {"query": ["p x"], "prompts": ["p "]}
        # an unreachable backend (after its own retries) opens the breaker at once
        r = post(srv.url, body, headers={})
        assert r.status_code == 503 and "Retry-After" in r.headers and r.json()["error_id"]
        calls = len(scorer.calls)
        r = post(srv.url, body, headers={})
        # open: answered at once, without calling the backend
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert "failing" in r.json()["error"]
        assert len(scorer.calls) == calls
        h = httpx.get(srv.url + "/health", timeout=60).json()
        assert h["status"] == "degraded" and "refused the connection" in h["reason"]
        assert h["circuit_breaker"] == "open"
        m = httpx.get(srv.url + "/metrics", timeout=60).json()
        assert m["requests"]["refused_circuit_open"] >= 1 and m["circuit_breaker"] == "open"
        # the backend comes back: after the cool-down a probe goes through and closes it
        scorer.error = None
        deadline = time.monotonic() + 60
        while True:
            r = post(srv.url, body, headers={})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 200
        h = httpx.get(srv.url + "/health", timeout=60).json()
        assert h["status"] == "ok" and h["circuit_breaker"] == "closed"


def test_health_is_degraded_while_a_backend_call_hangs():
    scorer = GateScorer()  # a judge that accepts the call and never answers
    with ServerThread(scorer, "gate", require_requirements=False, degraded_after_s=0.2) as srv:
        t = threading.Thread(target=lambda: post(srv.url, {"query": ["p x"], "prompts": ["p "]}, headers={},
                                                 timeout=120))
        t.start()
        try:
            assert scorer.entered.wait(60)
            deadline = time.monotonic() + 60
            while (h := httpx.get(srv.url + "/health", timeout=60).json())["status"] == "ok":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert h["status"] == "degraded" and "running for" in h["reason"]
        finally:
            scorer.release.set()
            t.join(60)
        assert httpx.get(srv.url + "/health", timeout=60).json()["status"] == "ok"


# --------------------------------------------------------------------------- limits


def test_requests_beyond_max_in_flight_get_503():
    scorer = GateScorer()
    with ServerThread(scorer, "gate", require_requirements=False, max_in_flight=2, ride_through_s=0) as srv:
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: results.append(
            post(srv.url, {"query": ["p x"], "prompts": ["p "]}, headers={}, timeout=120))) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            assert scorer.entered.wait(60)
            deadline = time.monotonic() + 60
            while httpx.get(srv.url + "/health", timeout=60).json()["in_flight"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            r = post(srv.url, {"query": ["p y"], "prompts": ["p "]}, headers={})
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            assert "max-in-flight" in r.json()["error"]
        finally:
            scorer.release.set()
            for t in threads:
                t.join(60)
        assert [x.status_code for x in results] == [200, 200]
        assert httpx.get(srv.url + "/metrics", timeout=60).json()["requests"]["refused_busy"] == 1


def test_half_sent_body_times_out_with_408():
    with ServerThread(get_scorer("rules"), "rules", read_timeout_s=1.0) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as s:
            s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"query\": [")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data[:200]


# --------------------------------------------------------------------------- security


def test_header_and_query_credentials_must_all_match(rules_srv):
    url = rules_srv.url + "/get_reward"
    assert httpx.post(url + f"?api_key={KEY}", json=GOOD, headers=AUTH, timeout=60).status_code == 200
    assert httpx.post(url + "?api_key=wrong", json=GOOD, headers=AUTH, timeout=60).status_code == 401
    assert httpx.post(url + f"?api_key={KEY}", json=GOOD, headers={"Authorization": "Bearer wrong"},
                      timeout=60).status_code == 401
    assert httpx.post(url + "?api_key=", json=GOOD, timeout=60).status_code == 401
    assert httpx.post(url, json=GOOD, headers={"Authorization": "Token " + KEY}, timeout=60).status_code == 401


def test_401s_are_counted_and_logged_without_secrets(rules_srv, caplog):
    before = httpx.get(rules_srv.url + "/metrics", headers=AUTH, timeout=60).json()["requests"]["unauthorized"]
    with caplog.at_level(logging.INFO):
        r = httpx.post(rules_srv.url + "/get_reward?api_key=guessed-secret-789", json=GOOD, timeout=60)
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    after = httpx.get(rules_srv.url + "/metrics", headers=AUTH, timeout=60).json()["requests"]["unauthorized"]
    assert after == before + 1
    # the server's records (the test's own httpx client logs its URL, key included)
    text = "\n".join(rec.getMessage() for rec in caplog.records if not rec.name.startswith(("httpx", "httpcore")))
    assert "401" in text and "/get_reward" in text
    assert "guessed-secret-789" not in text


@pytest.mark.slow  # runs the serve CLI
def test_empty_api_key_is_refused_at_start_up():
    for args, env in ((["--api-key", ""], {}), ([], {"OPENRLHF_REWARD_API_KEY": ""})):
        proc = start_cli_server(["--backend", "rules", "--port", "1", *args], env=env)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2, out
        assert "empty" in out and "Traceback" not in out


@pytest.mark.slow  # starts a server process
def test_access_log_never_shows_the_key():
    from server_utils import free_port

    port = free_port()
    proc = start_cli_server(["--backend", "rules", "--port", str(port), "--access-log", "--api-key", KEY])
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, headers=AUTH)
        r = httpx.post(f"http://127.0.0.1:{port}/get_reward?api_key={KEY}&x=1", json=GOOD, timeout=60)
        assert r.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/health?api_key=nope", timeout=60).status_code == 401
    finally:
        out = stop(proc)
    assert "/get_reward?api_key=***&x=1" in out, out[-2000:]
    assert KEY not in out and "nope" not in out
