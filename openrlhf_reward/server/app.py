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
import collections
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
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

import openrlhf_reward
from openrlhf_reward import ifeval
from openrlhf_reward.protocol import (
    ParsedRequest,
    ProtocolOptions,
    RequestError,
    build_response,
    parse_reward_request,
    sample_flags,
)
from openrlhf_reward.scorers.base import Scorer
from openrlhf_reward.server.batcher import (
    BatcherClosed,
    DynamicBatcher,
    RideThroughExpired,
    is_backend_unavailable,
)
from openrlhf_reward.server.breaker import CircuitOpenError
from openrlhf_reward.server.config import ServerConfig
from openrlhf_reward.server.metrics import ServerMetrics
from openrlhf_reward.text import is_blank

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


# ``api_key=`` anywhere in a URL (``?``, ``&`` typed for ``?``, ``;``), its name or ``=``
# percent-encoded, up to the next separator.
_API_KEY_PARAM = re.compile(r"(api(?:_|%5f)key(?:=|%3d))[^&;\s\"'/]*", re.I)


def redact(text: str, key: str | None = None) -> str:
    """``...?api_key=SECRET&x=1`` -> ``...?api_key=***&x=1``; with ``key``, that key is also
    removed wherever else it appears (``/get_reward/KEY``), plain or percent-encoded."""
    text = _API_KEY_PARAM.sub(r"\1***", text)
    if key:
        for form in {key, quote(key, safe=""), quote(key)}:
            text = text.replace(form, "***")
    return text


class RedactApiKey(logging.Filter):
    """Logging filter that removes API keys from log records: uvicorn's access log prints the
    path and query string, where OpenRLHF's clients carry the key (or mistype its place)."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a, self.key) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v, self.key) if isinstance(v, str) else v for k, v in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self.key)
        return True


# Every handler these loggers write through gets the filter (a logger's own filters do not
# see records that propagate from its children).
_LOGGERS_TO_REDACT = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "openrlhf_reward")


def _redacting_handlers() -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    for name in _LOGGERS_TO_REDACT:
        handlers.extend(h for h in logging.getLogger(name).handlers if h not in handlers)
    return handlers


class BearerAuth:
    """Pure-ASGI middleware: every HTTP request must carry the API key.

    Accepted forms: ``Authorization: Bearer KEY``; HTTP Basic auth ``user:KEY``, the key as
    the password and never as the user name (``http://user:KEY@host:port/get_reward``: OpenRLHF's aiohttp client turns
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
                    _user, colon, password = base64.b64decode(cred.strip(), validate=True).partition(b":")
                except (binascii.Error, ValueError):
                    return None
                if not colon:  # not user:password
                    return None
                found.append(password)
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
        # decode first: json.loads on bytes would also accept UTF-16 and UTF-32
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"request body is not UTF-8: {e.reason} at byte {e.start}", field="body",
                           status=400) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise RequestError("request body is nested too deeply", field="body", status=400) from None
    except ValueError as e:
        raise RequestError(f"request body is not valid JSON: {str(e)[:200]}", field="body", status=400) from None
    return parse_reward_request(data, options), data


def _answer(results: list, parsed: ParsedRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The JSON answer and the per-sample degenerate-reward flags it was made of: computed
    once, for the answer's ``extra_logs`` and for ``/metrics`` (runs in the parse thread pool)."""
    flags = [sample_flags(r) for r in results]
    return build_response(results, parsed.return_details, parsed.items, parsed.recovery, flags), flags


class Admission:
    """At most ``limit`` requests inside at once; the rest wait in arrival order (on the event
    loop, holding only their connection) for up to a budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0
        self._waiters: collections.OrderedDict[asyncio.Future, float] = collections.OrderedDict()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def oldest_wait_s(self) -> float | None:
        for started in self._waiters.values():
            return time.monotonic() - started
        return None

    async def enter(self, budget_s: float) -> float | None:
        """Seconds waited for a slot, or None when none came within ``budget_s``."""
        if self.inside < self.limit and not self._waiters:
            self.inside += 1
            return 0.0
        if budget_s <= 0:
            return None
        started = time.monotonic()
        slot = asyncio.get_running_loop().create_future()
        self._waiters[slot] = started
        try:
            await asyncio.wait_for(asyncio.shield(slot), budget_s)
        except TimeoutError:
            if not slot.done():
                return None
        except asyncio.CancelledError:  # the client went away: pass on a slot handed to us
            if slot.done():
                self.leave()
            raise
        finally:
            self._waiters.pop(slot, None)
        return time.monotonic() - started  # leave() handed us its slot

    def leave(self) -> None:
        # hand the slot to the oldest waiter still waiting, else free it
        while self._waiters:
            slot, _ = self._waiters.popitem(last=False)
            if not slot.done():
                slot.set_result(None)
                return
        self.inside -= 1


def _warm_up(backend_name: str) -> None:
    """Build now what the first requests would otherwise build, several at once: the
    visible-character class of ``is_blank`` (every parsed response's ``blank``) and, for
    backends that score IFEval checks, lm-eval's IFEval checkers."""
    is_blank("warm up")
    if backend_name not in _IFEVAL_BACKENDS:
        return
    try:
        ifeval.preload()
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
    api_key = config.resolved_api_key()
    backend_name = backend_name or getattr(scorer, "name", "") or type(scorer).__name__
    metrics = ServerMetrics(backend_name, config.metrics_window)
    options = config.protocol_options(backend_name, scorer)
    batcher: DynamicBatcher = config.make_batcher(scorer, backend_name, on_batch=metrics.record_batch)
    breaker = batcher.breaker
    # Request parsing and response building: CPU work kept off the event loop.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="reward-parse")
    redactor = RedactApiKey(api_key)
    admission = Admission(config.max_in_flight)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        handlers = _redacting_handlers()  # after uvicorn configured logging, before any request
        for h in handlers:
            h.addFilter(redactor)
        # Before serving, not in a background thread: a module import racing the first
        # requests' imports can hit the import lock's deadlock detection (half-initialised
        # modules). Run in a worker so the loop stays free.
        await asyncio.get_running_loop().run_in_executor(pool, _warm_up, backend_name)
        yield
        for h in handlers:
            h.removeFilter(redactor)
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
        if breaker.down:  # failing for longer than the ride-through budget: say so at once
            metrics.record_request(503)
            metrics.record_refused("down")
            return unavailable(f"the reward backend {backend_name!r} is down: requests waited for it longer than "
                               f"--ride-through-s ({config.ride_through_s:g} s); probes go on every "
                               f"{config.breaker_max_cooldown_s:g} s or less; last failure: {breaker.reason}",
                               max(1.0, breaker.wait_s()))
        # Wait for a slot before reading the body: memory stays within
        # max_body_bytes x max_in_flight however many requests arrive at once.
        waited = await admission.enter(config.ride_through_s)
        if waited is None:
            metrics.record_request(503)
            metrics.record_refused("busy")
            return unavailable(f"{config.max_in_flight} requests in flight (--max-in-flight) for longer than "
                               f"--ride-through-s ({config.ride_through_s:g} s); retry shortly", 1)
        try:
            response, held = await handle(request, t0)
        finally:
            admission.leave()
        if response.status_code == 200 and (held or waited > 0):
            metrics.record_rode_through()
        return response

    async def handle(request: Request, t0: float) -> tuple[Response, bool]:
        try:
            raw = await _read_body(request, config.max_body_bytes, config.read_timeout_s)
            parsed, data = await off_loop(_parse_body, raw, options)
        except RequestError as e:
            metrics.record_request(e.status)
            # the message may quote label content: only the field unless content logging is on
            logger.info("refused request (%d), field %s%s", e.status, e.field,
                        f": {e.message}" if config.log_requests else "")
            return _error(e.status, e.message, e.field), False
        if config.log_requests:
            logger.info("request: %s", json.dumps(data, ensure_ascii=True)[:20000])
        metrics.record_recovery(parsed.recovery)
        metrics.record_samples(parsed.items, parsed.recovery)
        if not parsed.items:
            metrics.record_request(200, time.perf_counter() - t0)
            return _json_response({"rewards": [], "scores": [], "extra_logs": {}}), False
        try:
            futures = batcher.submit_many(parsed.items)
        except BatcherClosed:
            metrics.record_request(503)
            return unavailable("the server is shutting down", 1), False
        held = False
        try:
            # one deadline for the whole request, the wait for a slot included
            budget = max(0.0, config.request_timeout_s - (time.perf_counter() - t0))
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), budget
            )
            held = any(getattr(f, "held", False) for f in futures)  # set by the batcher's ride-through
            payload, flags = await off_loop(_answer, results, parsed)
        except TimeoutError:
            for f in futures:
                f.cancel()
            metrics.record_request(503)
            logger.warning("request not answered within %.1f s; answered 503", config.request_timeout_s)
            return unavailable(f"not answered within {config.request_timeout_s:g} s (--request-timeout-s)", 1), False
        except (CircuitOpenError, RideThroughExpired) as e:
            metrics.record_request(503)
            metrics.record_refused("breaker" if isinstance(e, CircuitOpenError) else "expired")
            return unavailable(str(e), e.retry_after), False
        except Exception as e:  # a backend failure (or BackendOutputError): 5xx, the client retries
            error_id = uuid.uuid4().hex[:12]
            if is_backend_unavailable(e):
                metrics.record_request(503)
                logger.error("backend %r unavailable (error id %s): %s: %s", backend_name, error_id,
                             type(e).__name__, e)
                return unavailable(f"backend {backend_name!r} unavailable: {type(e).__name__}: {e}",
                                   max(1.0, breaker.retry_after()), error_id=error_id), False
            metrics.record_request(500)
            logger.error("backend %r failed (error id %s): %s: %s", backend_name, error_id,
                         type(e).__name__, e, exc_info=True)
            return _error(500, f"backend {backend_name!r} failed: {type(e).__name__}: {e}",
                          error_id=error_id), False
        metrics.record_results(flags)
        if config.log_requests:
            logger.info("rewards: %s", payload["rewards"])
        metrics.record_request(200, time.perf_counter() - t0)
        return _json_response(payload), held

    def health_status() -> tuple[str, str | None]:
        if not batcher.alive:
            return "error", "the batcher thread has stopped"
        state_ = breaker.state
        if breaker.down:
            return "degraded", (f"backend down: requests waited for it longer than the ride-through budget "
                                f"({config.ride_through_s:g} s); new requests get 503 until a probe succeeds; "
                                f"last: {breaker.reason}")
        if state_ != "closed":
            return "degraded", f"circuit breaker {state_} after backend failures; last: {breaker.reason}"
        started = batcher.call_started
        if started is not None and (running := time.monotonic() - started) > config.degraded_after_s:
            return "degraded", f"a backend call has been running for {running:.0f} s"
        return "ok", None

    def held() -> dict[str, Any]:
        """Requests waiting for a slot and samples waiting for the backend to come back."""
        for_backend, oldest_backend = batcher.held()
        ages = [a for a in (admission.oldest_wait_s(), oldest_backend) if a is not None]
        return {"held": admission.waiting + for_backend, "held_oldest_s": round(max(ages), 3) if ages else None,
                "held_for_slot": admission.waiting, "held_for_backend": for_backend}

    @app.get("/health")
    async def health() -> Response:
        status, reason = health_status()
        body = {
            "status": status,
            "reason": reason,
            "backend": backend_name,
            "version": openrlhf_reward.__version__,
            "queue_depth": batcher.pending,
            "in_flight": admission.inside,
            **held(),
            "circuit_breaker": breaker.state,
            "backend_down": breaker.down,
            "max_batch_size": batcher.max_batch_size,
            "max_wait_ms": batcher.max_wait_s * 1000.0,
        }
        return _json_response(body, 503 if status == "error" else 200)

    @app.get("/metrics")
    async def metrics_route(request: Request) -> Response:
        args = (batcher.pending, admission.inside, breaker.state, {**held(), **batcher.counts})
        if request.query_params.get("format") == "prometheus":
            from prometheus_client import CONTENT_TYPE_LATEST

            return Response(await off_loop(metrics.prometheus, *args), media_type=CONTENT_TYPE_LATEST)
        return _json_response(metrics.snapshot(*args))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # unknown routes and methods answer in the server's error shape, not FastAPI's {"detail"}
        if exc.status_code == 404:
            message = f"no such route {request.url.path!r} (routes: POST /get_reward, GET /health, GET /metrics)"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path!r}"
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, "route" if exc.status_code in (404, 405) else None,
                      headers=dict(exc.headers or {}))

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
