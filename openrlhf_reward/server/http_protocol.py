"""uvicorn's HTTP protocol with two changes a reward server needs: a header deadline and JSON 400s.

uvicorn bounds an idle keep-alive connection but not one that is still sending its request
head: a client that sends a header byte every few seconds (slowloris), or opens a
connection and sends nothing, holds it forever. Here every request head must arrive within
``read_timeout_s`` of the connection opening (or of the previous response); otherwise the
connection is answered 408 and closed. The body has its own deadline in the app.

uvicorn answers malformed HTTP (bad chunk size, two Content-Lengths, a TLS hello on the
plain port, a NUL in a header) with a text/plain 400 from the protocol layer, before any
ASGI app runs; here that answer is JSON in the server's error shape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _raw_json_response(status_line: bytes, message: str, field: str) -> bytes:
    body = json.dumps({"error": message, "field": field}).encode("ascii")
    return b"".join([
        status_line,
        b"content-type: application/json\r\n",
        b"content-length: ", str(len(body)).encode("ascii"), b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ])


class GuardedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a request-head deadline and JSON protocol errors."""

    read_timeout_s: float = 30.0  # set by make_protocol_class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.read_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_raw_json_response(
                b"HTTP/1.1 408 Request Timeout\r\n",
                f"request head not received within {self.read_timeout_s:g} s (--read-timeout-s)", "headers"))
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a further request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._cancel_head_timer()
        self.transport.write(_raw_json_response(b"HTTP/1.1 400 Bad Request\r\n", f"malformed HTTP request: {msg}",
                                                "http"))
        self.transport.close()


def make_protocol_class(read_timeout_s: float) -> type[GuardedHttpProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with this head deadline."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"read_timeout_s": float(read_timeout_s)})


def uvicorn_config(app: Any, server: Any, **overrides: Any) -> Any:
    """The ``uvicorn.Config`` for ``app`` under a :class:`ServerConfig` (one wiring for
    ``serve`` and the tests): the guarded protocol, and a graceful shutdown that lets every
    admitted or held request finish (SIGTERM: stop accepting, answer, then exit)."""
    import uvicorn

    settings: dict[str, Any] = dict(
        host=server.host, port=server.port, log_level=server.log_level, access_log=server.access_log,
        http=make_protocol_class(server.read_timeout_s),
        timeout_graceful_shutdown=int(server.graceful_shutdown_s),
        backlog=4096,  # a GRPO step's burst of connections arrives at once
    )
    settings.update(overrides)
    return uvicorn.Config(app, **settings)
