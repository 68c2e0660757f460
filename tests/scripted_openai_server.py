"""A scripted OpenAI-compatible chat server: a unit-test double for a teacher endpoint.

Answers are a pure function of the request (messages, seed), so builds against it are
reproducible; it can add latency, fail the first N requests (to exercise retries), and
records every request body and the peak number of requests in flight.

Augmentation requests (the builder's system prompt) get requirement JSON; markers in the
instruction script the failure paths: ``[BAD_JSON]``, ``[WRONG_COUNT]``,
``[UNKNOWN_CHECK]``, ``[UNKNOWN_TYPE]``. Every other request gets a short text answer
wrapped after a ``<think>`` block (the teacher must strip it).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "scripted-teacher"

_REQS = [
    {"type": "length", "text": "Write between 40 and 120 words.", "check": {"kind": "word_count", "min": 40, "max": 120}},
    {"type": "format", "text": "Use exactly three bullet points.", "check": {"kind": "bullet_count", "marker": "- ", "exact": 3}},
    {"type": "style", "text": "Write in a warm, encouraging tone.", "check": None},
    {"type": "content", "text": "Mention the word 'horizon'.", "check": {"kind": "contains_all", "keywords": ["horizon"]}},
    {"type": "format", "text": "End with a question.", "check": {"kind": "ends_with", "text": "?"}},
]


def _h(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def cerm_score(response: str) -> float:
    """The overall score (0-10, half points) the double gives a response in the CE-RM protocol."""
    return int(_h("cerm", response), 16) % 21 / 2


def cerm_turn(messages: list[dict[str, str]]) -> str:
    """Which turn of the judge backend's mode=cerm a chat request is: criteria, eval or other."""
    user = messages[-1]["content"]
    if len(messages) == 1 and "[Start of Query]" in user:
        return "criteria"
    if len(messages) == 3 and messages[1]["role"] == "assistant" and "[Start of Response]" in user:
        return "eval"
    return "other"


def _cerm_answer(messages: list[dict[str, str]]) -> str | None:
    """CE-RM turns (the judge backend's mode=cerm): tagged criteria, or boxed scores."""
    user = messages[-1]["content"]
    turn = cerm_turn(messages)
    if turn == "criteria":
        return "The query needs care.\n[Start of Criteria]\n1. Adherence: follows the query\n[End of Criteria]"
    if turn == "eval":
        response = user.split("[Start of Response]\n", 1)[1].rsplit("\n[End of Response]", 1)[0]
        return f"Adherence: ok \\boxed{{4}}\nOverall: \\boxed{{{cerm_score(response)}}}"
    return None


def scripted_answer(messages: list[dict[str, str]], seed: int | None) -> str:
    """The deterministic answer for one request."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"]
    if not system and (cerm := _cerm_answer(messages)) is not None:
        return cerm
    if system.startswith("You add requirements"):
        query = user.split("Instruction:\n", 1)[-1].split("\n\nAdd exactly", 1)[0]
        if "[BAD_JSON]" in query:
            return "Sure! Here are the requirements: 1. be nice"
        reqs = [dict(r) for r in _REQS]
        if "[WRONG_COUNT]" in query:
            reqs = reqs[:4]
        if "[UNKNOWN_CHECK]" in query:
            reqs[0]["check"] = {"kind": "rhymes_with", "word": "sea"}
        if "[UNKNOWN_TYPE]" in query:
            reqs[2]["type"] = "vibe"
        # Vary the texts per query so documents differ; fenced output is tolerated.
        reqs[3]["text"] = f"Mention the word 'horizon' (note {_h(query)[:4]})."
        return "```json\n" + json.dumps({"requirements": reqs}) + "\n```"
    return f"<think>planning {_h(user)}</think>\nAnswer {_h(user, seed)}: here is my reply."


class ScriptedServer:
    """Run with ``with ScriptedServer(latency=0.05) as srv: srv.base_url``."""

    def __init__(self, latency: float = 0.0, fail_first: int = 0, fail_status: int = 500) -> None:
        self.latency = latency
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._n = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, obj: Any) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer._lock:
                    outer._n += 1
                    n = outer._n
                    outer.requests.append(body)
                    outer.in_flight += 1
                    outer.peak_in_flight = max(outer.peak_in_flight, outer.in_flight)
                try:
                    if outer.latency:
                        time.sleep(outer.latency)
                    if n <= outer.fail_first:
                        self._send(outer.fail_status, {"error": {"message": f"scripted failure {n}"}})
                        return
                    text = scripted_answer(body["messages"], body.get("seed"))
                    self._send(200, {
                        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body.get("model", MODEL),
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    })
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # a short poll: shutdown() waits up to one poll interval (0.5 s by default, per test)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
