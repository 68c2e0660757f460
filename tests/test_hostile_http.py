"""The HTTP layer under hostile clients: idle and slowloris connections, malformed HTTP,
unknown routes, non-UTF-8 bodies, keys typed into odd places of a URL, Basic auth."""

from __future__ import annotations

import base64
import json
import socket
import time

import httpx
import pytest
from server_utils import ServerThread, free_port, start_cli_server, stop, wait_healthy

from openrlhf_reward.scorers import get_scorer

pytestmark = pytest.mark.slow  # every test here runs a real server

KEY = "hostile-key-789"
REQ = {"id": "c1", "type": "style", "text": "Lowercase.", "check": {"kind": "lowercase"}}
GOOD = {"query": ["P: hello there"], "prompts": ["P: "], "labels": [{"requirements": [REQ]}]}


@pytest.fixture(scope="module")
def srv():
    # The server runs in this process, so the idle-connection test holds both ends of its
    # 1,100 sockets here: raise the soft open-file limit as `serve` does for itself.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        with ServerThread(get_scorer("rules"), "rules", read_timeout_s=3.0) as s:
            yield s
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _raw(port: int, data: bytes, timeout: float = 60.0) -> bytes:
    """Send raw bytes, read until the server closes (or a whole answer has arrived)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
    return out


def _json_answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


@pytest.mark.parametrize("data", [
    b"POST /get_reward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
    bytes.fromhex("160301020001") + b"\x00" * 64,  # a TLS ClientHello on the plain port
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
], ids=["bad-chunk-size", "two-content-lengths", "negative-content-length", "tls-hello", "nul-in-header"])
def test_malformed_http_gets_a_json_400(srv, data):
    status, body = _json_answer(_raw(srv.port, data))
    assert status == 400 and body["field"] == "http" and body["error"].startswith("malformed HTTP request")


def test_unknown_routes_and_methods_answer_in_the_error_shape(srv):
    r = httpx.get(srv.url + "/nope", timeout=60)
    assert r.status_code == 404 and r.json()["field"] == "route" and "/get_reward" in r.json()["error"]
    r = httpx.get(srv.url + "/get_reward", timeout=60)
    assert r.status_code == 405 and r.json()["field"] == "route" and "GET" in r.json()["error"]
    assert "detail" not in r.json()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_bodies_that_are_not_utf8_are_refused(srv, encoding):
    r = httpx.post(srv.url + "/get_reward", content=json.dumps(GOOD).encode(encoding), timeout=60)
    assert r.status_code == 400 and r.json()["field"] == "body" and "UTF-8" in r.json()["error"]


def test_idle_and_slowloris_connections_are_closed_and_do_not_starve_health(srv):
    n = 1100
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
            if i % 2:  # half send a partial request line, half nothing at all
                s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        # while they are all held, a new client is served
        assert httpx.get(srv.url + "/health", timeout=60).status_code == 200
        r = httpx.post(srv.url + "/get_reward", json=GOOD, timeout=60)
        assert r.status_code == 200 and r.json()["rewards"] == [1.0]
        for s in socks[1::2]:  # a slowloris keeps trickling header bytes: no help
            s.sendall(b"a")
        closed = 0
        deadline = time.monotonic() + 120
        for s in socks:
            s.settimeout(max(1.0, deadline - time.monotonic()))
            data = b""
            try:
                while chunk := s.recv(4096):
                    data += chunk
            except (ConnectionResetError, TimeoutError):
                pass
            if not data or data.startswith(b"HTTP/1.1 408"):
                closed += 1
        assert closed == n
    finally:
        for s in socks:
            s.close()
    assert httpx.get(srv.url + "/health", timeout=60).status_code == 200


def test_the_key_never_reaches_a_log_whatever_url_is_sent():
    port = free_port()
    proc = start_cli_server(["--backend", "rules", "--port", str(port), "--api-key", KEY, "--access-log"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/health", proc, headers={"Authorization": f"Bearer {KEY}"})
        tries = [
            f"/get_reward&api_key={KEY}",  # '&' typed for '?'
            f"/get_reward?api%5Fkey={KEY}",  # the name percent-encoded
            f"/get_reward?API_KEY={KEY}",
            f"/get_reward/{KEY}",  # the key in the path
            f"/get_reward?api_key={KEY}x",  # a wrong key that contains the right one
            f"/get_reward?api_key={KEY}",  # the right way
            f"/get_reward;api_key={KEY}",
        ]
        codes = [httpx.post(url + t, json=GOOD, timeout=60).status_code for t in tries]
        assert codes[-2] == 200 and all(c in (401, 404) for c in codes[:-2] + codes[-1:])
    finally:
        out = stop(proc)
    assert "POST /get_reward" in out  # the access log is on
    assert KEY not in out, [line for line in out.splitlines() if KEY in line]


def test_basic_auth_takes_the_key_as_password_only():
    with ServerThread(get_scorer("rules"), "rules", api_key=KEY) as s:
        def basic(userpass: str) -> int:
            token = base64.b64encode(userpass.encode()).decode()
            return httpx.post(s.url + "/get_reward", json=GOOD, timeout=60,
                              headers={"Authorization": f"Basic {token}"}).status_code

        assert basic(f"trainer:{KEY}") == 200
        assert basic(f"{KEY}:") == 401  # the key as user name
        assert basic(KEY) == 401  # no colon at all
        assert basic(f"{KEY}:wrong") == 401


def test_the_worst_legal_requests_starve_no_one():
    """40k requirements (refused at the count) and ten 256-character near-miss keywords on
    1 MB, sent together with small requests and /health probes: everyone gets an answer."""
    import concurrent.futures

    near = "a" * 255 + "b"
    keywords = {"requirements": [
        {"id": f"c{i}", "type": "content", "text": "t",
         "check": {"kind": "ifeval", "instruction_id": "keywords:existence", "kwargs": {"keywords": [near[:-1] + c]}}}
        for i, c in enumerate("bcdefghijk")]}
    heavy = {"query": ["p " + "a" * (1 << 20)], "prompts": ["p "], "labels": [keywords]}
    many = {"query": ["p x"], "prompts": ["p "], "labels": [{"requirements": [
        {"id": f"c{i}", "type": "style", "text": "Lowercase.", "check": {"kind": "lowercase"}} for i in range(40_000)]}]}
    with ServerThread(get_scorer("rules"), "rules", max_body_bytes=8 << 20) as s:
        post = lambda body: httpx.post(s.url + "/get_reward", json=body, timeout=120)  # noqa: E731
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            big = [pool.submit(post, heavy) for _ in range(4)] + [pool.submit(post, many) for _ in range(2)]
            small = [pool.submit(post, GOOD) for _ in range(40)]
            health = [pool.submit(httpx.get, s.url + "/health", timeout=120) for _ in range(40)]
            assert [f.result().status_code for f in big[:4]] == [200] * 4
            assert all(r.json()["rewards"] == [0.0] for r in (f.result() for f in big[:4]))  # every keyword missing
            refused = [f.result() for f in big[4:]]
            assert [r.status_code for r in refused] == [422, 422]
            assert all(r.json()["field"] == "labels[0].requirements" for r in refused)
            assert [f.result().status_code for f in small] == [200] * 40
            assert [f.result().status_code for f in health] == [200] * 40
