"""The reward server: OpenRLHF's ``POST /get_reward`` with dynamic batching, plus health and metrics.

``create_app(scorer, ServerConfig(), backend_name)`` returns a FastAPI app; run it with
uvicorn (``openrlhf-reward serve`` does). Routes:

* ``POST /get_reward``: ``{"query": [str], "prompts": [str], "labels": [...]}`` ->
  ``{"rewards": [float], "scores": [float], "extra_logs": {str: float}}``
* ``GET /health``: ``{"status": "ok" | "degraded" | "error", "reason": ..., ...}``
* ``GET /metrics``: request counts by status, batch sizes, latency p50/p95/p99, degenerate
  reward rates (JSON; ``?format=prometheus`` for Prometheus text)

Every route requires the API key when one is configured. No CPU work of a request runs on
the event loop: JSON decoding, parsing and response building run in a thread pool, scoring
on the batcher's thread. Every error is JSON (docs/server.md lists them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hmac
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from starlette.responses import Response

import openrlhf_reward
from openrlhf_reward.protocol import (
    ParsedRequest,
    ProtocolOptions,
    RequestError,
    build_response,
    parse_reward_request,
)
from openrlhf_reward.scorers.base import Scorer, ScoreRequest
from openrlhf_reward.server.batcher import BatcherClosed, DynamicBatcher, is_backend_unavailable
from openrlhf_reward.server.breaker import CircuitBreaker, CircuitOpenError
from openrlhf_reward.server.config import ServerConfig
from openrlhf_reward.server.metrics import ServerMetrics

logger = logging.getLogger("openrlhf_reward.server")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

# Backends that may score IFEval checks: lm-eval's checkers are loaded at start-up for them.
_IFEVAL_BACKENDS = frozenset({"rules", "ensemble"})


def _json_bytes(payload: Any) -> bytes:
    # ensure_ascii: a lone surrogate quoted from the request stays valid (escaped) JSON
    return json.dumps(payload, allow_nan=False, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=_json_bytes(payload), status_code=status, media_type="application/json",
                    headers=headers)


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None,
           **extra: Any) -> Response:
    return _json_response({"error": message, "field": field, **extra}, status, headers)


async def _send_json(send: Callable, status: int, payload: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = _json_bytes(payload)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]})
    await send({"type": "http.response.body", "body": body})


_API_KEY_IN_QUERY = re.compile(r"((?:^|[?&;])api_key=)[^&;\s\"]*", re.I)


def redact(text: str) -> str:
    """``...?api_key=SECRET&x=1`` -> ``...?api_key=***&x=1``."""
    return _API_KEY_IN_QUERY.sub(r"\1***", text)


class RedactApiKey(logging.Filter):
    """Logging filter that removes ``api_key=...`` from log records (uvicorn's access log
    formats the path with its query string, where OpenRLHF's clients carry the key)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and "api_key=" in record.msg:
            record.msg = redact(record.msg)
        return True


class BearerAuth:
    """Pure-ASGI middleware: every HTTP request must carry the API key.

    Accepted forms: ``Authorization: Bearer KEY``; HTTP Basic auth with KEY as the
    password (``http://user:KEY@host:port/get_reward``: OpenRLHF's aiohttp client turns
    URL credentials into this header); or ``?api_key=KEY`` in the URL (OpenRLHF posts to
    the URL exactly as given and cannot add headers). The rule: at least one credential,
    and every credential given (header and query alike) must be the key; a request with a
    right header and a wrong ``api_key`` is refused.
    """

    def __init__(self, app: ASGIApp, api_key: str, on_reject: Callable[[dict], None] | None = None) -> None:
        self.app = app
        self.key = api_key.encode("utf-8")
        self.on_reject = on_reject

    def _ok(self, candidate: bytes) -> bool:
        return hmac.compare_digest(candidate, self.key)

    def credentials(self, scope: dict) -> list[bytes] | None:
        """Every credential the request carries (None: a malformed Authorization header)."""
        found: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name != b"authorization":
                continue
            scheme, _, cred = value.partition(b" ")
            scheme = scheme.lower()
            if scheme == b"bearer":
                found.append(cred.strip())
            elif scheme == b"basic":
                try:
                    user, _, password = base64.b64decode(cred.strip(), validate=True).partition(b":")
                except (binascii.Error, ValueError):
                    return None
                found.append(password if password else user)
            else:
                return None
        qs = scope.get("query_string", b"")
        if qs and b"api_key=" in qs:
            found.extend(v.encode("utf-8", "surrogateescape")
                         for v in parse_qs(qs.decode("latin-1"), keep_blank_values=True).get("api_key", []))
        return found

    def authorized(self, scope: dict) -> bool:
        creds = self.credentials(scope)
        return bool(creds) and all(self._ok(c) for c in creds)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        if self.on_reject is not None:
            self.on_reject(scope)
        await _send_json(send, 401, {
            "error": "missing or wrong API key (send 'Authorization: Bearer KEY' or ?api_key=KEY)",
            "field": "Authorization",
        }, [(b"www-authenticate", b'Bearer realm="openrlhf-reward"')])


class CatchAll:
    """Outermost ASGI middleware: an unexpected exception becomes a JSON 500 with an error id
    (the traceback goes to the log under that id, never to the client)."""

    def __init__(self, app: ASGIApp, on_error: Callable[[], None] | None = None) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            logger.exception("unexpected error %s on %s %s", error_id, scope.get("method"), scope.get("path"))
            if self.on_error is not None:
                self.on_error()
            if not started:
                await _send_json(send, 500, {"error": f"internal server error (error id {error_id})",
                                             "field": None, "error_id": error_id})


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise RequestError("invalid Content-Length header", field="Content-Length", status=400) from None
        if n > limit:
            raise RequestError(
                f"request body is {n} bytes; this server accepts at most {limit} (--max-body-bytes)",
                field="body", status=413,
            )
    chunks: list[bytes] = []
    total = 0

    async def read() -> None:
        nonlocal total
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise RequestError(
                    f"request body exceeds {limit} bytes (--max-body-bytes)", field="body", status=413
                )
            chunks.append(chunk)

    try:
        # uvicorn's keep-alive timeout does not bound a half-sent body: this does
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise RequestError(
            f"request body not received within {timeout_s:g} s (--read-timeout-s)", field="body", status=408
        ) from None
    return b"".join(chunks)


def _parse_body(raw: bytes, options: ProtocolOptions) -> tuple[ParsedRequest, Any]:
    """JSON decoding and protocol parsing (runs in the parse thread pool, not on the loop)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise RequestError("request body is nested too deeply", field="body", status=400) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"request body is not valid JSON: {str(e)[:200]}", field="body", status=400) from None
    return parse_reward_request(data, options), data


def _request_length(req: ScoreRequest) -> int:
    # Characters are a good enough proxy for tokens to group similar lengths.
    return len(req.prompt) + len(req.response)


def _preload_ifeval() -> None:
    """Import lm-eval's IFEval checkers now, so the first IFEval request does not pay for it."""
    try:
        from openrlhf_reward import ifeval
    except ImportError:
        return
    fn = getattr(ifeval, "preload", None) or getattr(ifeval, "_registry", None)
    if fn is None:
        return
    try:
        fn()
    except Exception as e:  # lm-eval not installed: IFEval labels are refused per request
        logger.info("IFEval checkers not preloaded: %s: %s", type(e).__name__, e)


def create_app(
    scorer: Scorer,
    config: ServerConfig | None = None,
    backend_name: str | None = None,
    close_scorer: bool = True,
) -> FastAPI:
    """The FastAPI app serving ``scorer``; the batcher thread starts now and stops at shutdown."""
    config = config or ServerConfig()
    config.validate()
    api_key = config.resolved_api_key()
    backend_name = backend_name or getattr(scorer, "name", "") or type(scorer).__name__
    metrics = ServerMetrics(backend_name, config.metrics_window)
    options = config.protocol_options(backend_name, scorer)
    breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s)
    batcher: DynamicBatcher = DynamicBatcher(
        scorer.score,
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.effective_max_wait_ms(backend_name),
        length_fn=_request_length,
        length_aware=config.length_aware,
        isolate_failures=config.isolate_failures,
        on_batch=metrics.record_batch,
        breaker=breaker,
    )
    # Request parsing and response building: CPU work kept off the event loop.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="reward-parse")
    redactor = RedactApiKey()
    state = {"in_flight": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        access = logging.getLogger("uvicorn.access")
        access.addFilter(redactor)  # after uvicorn configured logging, before any request
        if backend_name in _IFEVAL_BACKENDS or getattr(scorer, "uses_ifeval", False):
            # Before serving, not in a background thread: a module import racing the first
            # requests' imports can hit the import lock's deadlock detection (half-initialised
            # modules). Run in a worker so the loop stays free.
            await asyncio.get_running_loop().run_in_executor(pool, _preload_ifeval)
        yield
        access.removeFilter(redactor)
        batcher.close()
        pool.shutdown(wait=False, cancel_futures=True)
        if close_scorer:
            scorer.close()

    app = FastAPI(
        title="openrlhf-reward",
        version=openrlhf_reward.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.config = config
    app.state.breaker = breaker

    def unavailable(message: str, retry_after: float, **extra: Any) -> Response:
        return _error(503, message, headers={"Retry-After": str(max(1, math.ceil(retry_after)))}, **extra)

    async def off_loop(fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> Response:
        t0 = time.perf_counter()
        # Refuse before reading the body: memory stays within max_body_bytes x max_in_flight.
        if state["in_flight"] >= config.max_in_flight:
            metrics.record_request(503)
            metrics.record_refused("busy")
            return unavailable(f"{config.max_in_flight} requests in flight (--max-in-flight); retry shortly", 1)
        try:
            breaker.check()
        except CircuitOpenError as e:
            metrics.record_request(503)
            metrics.record_refused("breaker")
            return unavailable(str(e), e.retry_after)
        state["in_flight"] += 1
        try:
            return await handle(request, t0)
        finally:
            state["in_flight"] -= 1

    async def handle(request: Request, t0: float) -> Response:
        try:
            raw = await _read_body(request, config.max_body_bytes, config.read_timeout_s)
            parsed, data = await off_loop(_parse_body, raw, options)
        except RequestError as e:
            metrics.record_request(e.status)
            # the message may quote label content: only the field unless content logging is on
            logger.info("refused request (%d), field %s%s", e.status, e.field,
                        f": {e.message}" if config.log_requests else "")
            return _error(e.status, e.message, e.field)
        if config.log_requests:
            logger.info("request: %s", json.dumps(data, ensure_ascii=True)[:20000])
        metrics.record_recovery(parsed.recovery)
        metrics.record_samples(parsed.items, parsed.recovery)
        if not parsed.items:
            metrics.record_request(200, time.perf_counter() - t0)
            return _json_response({"rewards": [], "scores": [], "extra_logs": {}})
        try:
            futures = batcher.submit_many(parsed.items)
        except BatcherClosed:
            metrics.record_request(503)
            return unavailable("the server is shutting down", 1)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), config.request_timeout_s
            )
            payload = await off_loop(build_response, results, parsed.return_details, parsed.items, parsed.recovery)
        except TimeoutError:
            for f in futures:
                f.cancel()
            metrics.record_request(503)
            logger.warning("scoring took longer than %.1f s; answered 503", config.request_timeout_s)
            return unavailable(f"scoring took longer than {config.request_timeout_s} s", 1)
        except CircuitOpenError as e:
            metrics.record_request(503)
            metrics.record_refused("breaker")
            return unavailable(str(e), e.retry_after)
        except Exception as e:  # a backend failure (or BackendOutputError): 5xx, the client retries
            error_id = uuid.uuid4().hex[:12]
            if is_backend_unavailable(e):
                metrics.record_request(503)
                logger.error("backend %r unavailable (error id %s): %s: %s", backend_name, error_id,
                             type(e).__name__, e)
                return unavailable(f"backend {backend_name!r} unavailable: {type(e).__name__}: {e}",
                                   max(1.0, breaker.retry_after()), error_id=error_id)
            metrics.record_request(500)
            logger.error("backend %r failed (error id %s): %s: %s", backend_name, error_id,
                         type(e).__name__, e, exc_info=True)
            return _error(500, f"backend {backend_name!r} failed: {type(e).__name__}: {e}", error_id=error_id)
        metrics.record_results(results)
        if config.log_requests:
            logger.info("rewards: %s", payload["rewards"])
        metrics.record_request(200, time.perf_counter() - t0)
        return _json_response(payload)

    def health_status() -> tuple[str, str | None]:
        if not batcher._thread.is_alive():
            return "error", "the batcher thread has stopped"
        state_ = breaker.state
        if state_ != "closed":
            return "degraded", f"circuit breaker {state_} after backend failures; last: {breaker.reason}"
        started = batcher.call_started
        if started is not None and (running := time.monotonic() - started) > config.degraded_after_s:
            return "degraded", f"a backend call has been running for {running:.0f} s"
        return "ok", None

    @app.get("/health")
    async def health() -> Response:
        status, reason = health_status()
        body = {
            "status": status,
            "reason": reason,
            "backend": backend_name,
            "version": openrlhf_reward.__version__,
            "queue_depth": batcher.pending,
            "in_flight": state["in_flight"],
            "circuit_breaker": breaker.state,
            "max_batch_size": batcher.max_batch_size,
            "max_wait_ms": batcher.max_wait_s * 1000.0,
        }
        return _json_response(body, 503 if status == "error" else 200)

    @app.get("/metrics")
    async def metrics_route(request: Request) -> Response:
        args = (batcher.pending, state["in_flight"], breaker.state)
        if request.query_params.get("format") == "prometheus":
            from prometheus_client import CONTENT_TYPE_LATEST

            return Response(await off_loop(metrics.prometheus, *args), media_type=CONTENT_TYPE_LATEST)
        return _json_response(metrics.snapshot(*args))

    def on_unauthorized(scope: dict) -> None:
        metrics.record_request(401)
        client = scope.get("client") or ("?", 0)
        # path only: the query string may hold a (wrong) key
        logger.warning("401: missing or wrong API key for %s %s from %s", scope.get("method"),
                       scope.get("path"), client[0])

    if api_key:
        app.add_middleware(BearerAuth, api_key=api_key, on_reject=on_unauthorized)
    # added last = outermost: also catches errors in the auth middleware
    app.add_middleware(CatchAll, on_error=lambda: (metrics.record_unexpected(), metrics.record_request(500)))
    return app
