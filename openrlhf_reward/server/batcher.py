"""Dynamic batching across concurrent callers, on one worker thread.

OpenRLHF sends one sample per request with many requests in flight. Each caller submits
its samples and gets ``concurrent.futures.Future`` objects back; a single worker thread
gathers pending samples into batches (up to ``max_batch_size``, waiting at most
``max_wait_ms`` after the oldest pending sample arrived), groups samples of similar length
together, runs the backend on the batch and resolves each future with its own result.

The worker thread keeps model backends off the server's event loop, and serialises calls
into the backend (model backends are not thread-safe). The async server awaits the futures
with ``asyncio.wrap_future``; the ``reward_func`` file blocks on them from OpenRLHF's
threads. No third-party imports.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from openrlhf_reward.server.breaker import CLOSED, CircuitBreaker, CircuitOpenError

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("openrlhf_reward.server")


@dataclass
class _Pending(Generic[T]):
    payload: T
    future: concurrent.futures.Future
    arrived: float
    length: int
    held: bool = False  # waited for the backend to come back (ride-through)


class BatcherClosed(RuntimeError):
    """Submitted to a batcher that has been shut down."""


class RideThroughExpired(RuntimeError):
    """A sample was held for the ride-through budget and the backend did not come back."""

    backend_unavailable = True

    def __init__(self, held_s: float, budget_s: float, reason: str, retry_after: float) -> None:
        super().__init__(
            f"the reward backend has been unavailable for {held_s:.0f} s, past the ride-through "
            f"budget of {budget_s:g} s (--ride-through-s); last failure: {reason or 'unknown'}")
        self.retry_after = retry_after
        self.reason = reason


def _resolve(p: _Pending, result: Any = None, error: BaseException | None = None) -> None:
    """Answer a caller; one that went away (cancelled future) is skipped."""
    try:
        if error is not None:
            p.future.set_exception(error)
        else:
            p.future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


_UNAVAILABLE_NAMES = ("ConnectError", "ConnectionError", "Timeout", "RemoteProtocolError")


def is_backend_unavailable(exc: BaseException) -> bool:
    """True when an error (or one it was raised from) says the backend cannot be reached:
    a connection or timeout error, or an exception marked ``backend_unavailable = True``.
    Such a failure is not the sample's fault, so retrying samples one by one is pointless."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "backend_unavailable", False) or isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(n in cls.__name__ for cls in type(e).__mro__ for n in _UNAVAILABLE_NAMES):
            return True
        e = e.__cause__ or e.__context__
    return False


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


class DynamicBatcher(Generic[T, R]):
    """Gather items from many threads/coroutines into batches for ``score_fn``.

    ``score_fn(batch) -> results`` must return one result per item, in order.
    ``length_fn(item) -> int`` sizes items for length-aware grouping (e.g. characters).
    ``on_batch(size, seconds, ok)`` is called after every backend call (metrics).
    With ``isolate_failures`` a failing batch is retried item by item, so one bad sample
    fails only its own request, unless the failure says the backend itself is down
    (:func:`is_backend_unavailable`) or the first two single-item retries fail the same
    way: then the whole batch fails at once (no sample-by-sample retry storm against a
    dead endpoint). ``breaker`` (a :class:`CircuitBreaker`) sees every backend call.

    Ride-through (``ride_through_s > 0``, needs a breaker): a sample whose backend call
    failed because the backend cannot be reached is *held*, not failed, and so is every
    sample that arrives while the breaker is open. Only probes (one held sample, with the
    breaker's backoff) reach the backend meanwhile; when one succeeds the held samples are
    scored at once. A sample held longer than ``ride_through_s`` after it arrived fails with
    :class:`RideThroughExpired`. Without waiting samples, the last failed sample is reused
    as the probe, so a backend declared down is still noticed when it comes back.
    """

    def __init__(
        self,
        score_fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        length_fn: Callable[[T], int] | None = None,
        length_aware: bool = True,
        isolate_failures: bool = True,
        on_batch: Callable[[int, float, bool], None] | None = None,
        name: str = "reward-batcher",
        breaker: CircuitBreaker | None = None,
        ride_through_s: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if ride_through_s < 0:
            raise ValueError(f"ride_through_s must be >= 0, got {ride_through_s}")
        self.score_fn = score_fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.length_fn = length_fn
        self.length_aware = length_aware and length_fn is not None
        self.isolate_failures = isolate_failures
        self.on_batch = on_batch
        self.breaker = breaker
        self.ride_through_s = float(ride_through_s)
        self.call_started: float | None = None  # monotonic start of the running backend call
        self.counts = {"samples_held": 0, "samples_rode_through": 0, "samples_expired": 0, "probes": 0}
        self._cond = threading.Condition()
        self._pending: list[_Pending[T]] = []  # oldest first
        self._probe_payload: T | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    @property
    def alive(self) -> bool:
        """False once the worker thread has died: nothing submitted would be answered."""
        return self._thread.is_alive()

    def submit_many(self, items: Sequence[T]) -> list[concurrent.futures.Future]:
        now = time.monotonic()
        entries = [
            _Pending(it, concurrent.futures.Future(), now, self.length_fn(it) if self.length_fn else 0)
            for it in items
        ]
        with self._cond:
            if self._closed:
                raise BatcherClosed("the reward batcher is shut down")
            self._pending.extend(entries)
            self._cond.notify()
        return [e.future for e in entries]

    def submit(self, item: T) -> concurrent.futures.Future:
        return self.submit_many([item])[0]

    def score(self, items: Sequence[T], timeout: float | None = None) -> list[R]:
        """Blocking convenience: submit and wait for all results (raises the backend's error)."""
        futures = self.submit_many(items)
        return [f.result(timeout=timeout) for f in futures]

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def held(self) -> tuple[int, float | None]:
        """Samples waiting for the backend to come back, and the age of the oldest (s)."""
        if not self._holding() or self.breaker.state == CLOSED:
            return 0, None
        with self._cond:
            if not self._pending:
                return 0, None
            return len(self._pending), time.monotonic() - self._pending[0].arrived

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop accepting work; pending items are still scored before the worker exits."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker

    def _holding(self) -> bool:
        return self.ride_through_s > 0 and self.breaker is not None

    def _take_batch(self) -> list[_Pending[T]]:
        """Pick the next batch from ``self._pending`` (lock held).

        The oldest pending item is always in the batch. With more items pending than fit,
        the rest of the batch is chosen among the oldest ``2 * max_batch_size`` items as the
        ones closest to it in length (small padding); the window bounds how far a younger
        item can overtake an older one, so tail latency stays close to FIFO's.
        """
        pending = self._pending
        size = self.max_batch_size
        if len(pending) <= size:
            self._pending = []
            return pending
        if not self.length_aware:
            batch, self._pending = pending[:size], pending[size:]
            return batch
        window = min(len(pending), 2 * size)
        anchor = pending[0].length
        order = sorted(range(1, window), key=lambda i: (abs(pending[i].length - anchor), i))
        chosen = {0, *order[: size - 1]}
        batch = [p for i, p in enumerate(pending[:window]) if i in chosen]
        self._pending = [p for i, p in enumerate(pending[:window]) if i not in chosen] + pending[window:]
        return batch

    def _expire(self) -> None:
        """Fail held samples past the ride-through budget, drop abandoned ones (lock held)."""
        if not self._pending or not self._holding() or self.breaker.state == CLOSED:
            return
        now = time.monotonic()
        cutoff = now - self.ride_through_s
        if self._pending[0].arrived > cutoff and not any(p.future.cancelled() for p in self._pending[:64]):
            return
        keep: list[_Pending[T]] = []
        for p in self._pending:
            if p.future.cancelled():
                continue
            if p.arrived <= cutoff:
                self.breaker.declare_down()  # the next requests are told at once, not held again
                self.counts["samples_expired"] += 1
                _resolve(p, error=RideThroughExpired(now - p.arrived, self.ride_through_s, self.breaker.reason,
                                                     max(1.0, self.breaker.wait_s())))
            else:
                keep.append(p)
        self._pending = keep

    def _run(self) -> None:
        while True:
            probe: list[_Pending[T]] | None = None
            stand_in = False  # a probe with the last failed sample, which nobody waits for
            with self._cond:
                while True:
                    self._expire()
                    wait = self.breaker.wait_s() if self._holding() else 0.0
                    if not self._pending:
                        if self._closed:
                            return  # closed and drained
                        if self._holding() and self._probe_payload is not None and self.breaker.state != CLOSED:
                            # a backend declared down, nobody waiting: probe it with the last sample
                            if wait <= 0:
                                probe = [_Pending(self._probe_payload, concurrent.futures.Future(), 0.0, 0)]
                                stand_in = True
                                break
                            self._cond.wait(wait)
                        else:
                            self._cond.wait()
                        continue
                    if wait <= 0:
                        break
                    # Breaker open: hold everything until the next probe or the oldest's budget.
                    self._mark_held(self._pending)
                    until_expiry = self._pending[0].arrived + self.ride_through_s - time.monotonic()
                    self._cond.wait(max(0.01, min(wait, until_expiry)))
                if probe is None and self._holding() and self.breaker.state != CLOSED:
                    probe = [self._pending.pop(0)]  # half-open: one held sample is the probe
                elif probe is None:
                    # Wait for more items until the batch is full or the oldest item has
                    # waited max_wait (items that queued while the backend ran go at once).
                    deadline = self._pending[0].arrived + self.max_wait_s
                    while len(self._pending) < self.max_batch_size and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    batch = self._take_batch()
            if probe is not None:
                self.counts["probes"] += 1
                if stand_in:
                    with contextlib.suppress(Exception):
                        self._call(probe)
                    continue
                batch = probe
            # Skip items whose caller went away (a cancelled future).
            batch = [p for p in batch if not p.future.cancelled()]
            if batch:
                self._process(batch)

    def _call(self, batch: list[_Pending[T]]) -> list[Any]:
        if self.breaker is not None:
            self.breaker.acquire()  # raises CircuitOpenError while the backend is failing
        t0 = time.perf_counter()
        ok = False
        self.call_started = time.monotonic()
        try:
            results = list(self.score_fn([p.payload for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(
                    f"backend returned {len(results)} results for a batch of {len(batch)}"
                )
            ok = True
            return results
        except Exception as e:
            if self.breaker is not None:
                self.breaker.record_failure(_describe(e), unavailable=is_backend_unavailable(e))
            raise
        finally:
            self.call_started = None
            if ok and self.breaker is not None:
                self.breaker.record_success()
            if self.on_batch is not None:
                try:
                    self.on_batch(len(batch), time.perf_counter() - t0, ok)
                except Exception:  # metrics must never break scoring
                    logger.exception("batch metrics callback failed")

    def _hold(self, batch: list[_Pending[T]], error: Exception) -> None:
        """Put samples that failed because the backend is unreachable back in the queue."""
        with self._cond:
            self._probe_payload = batch[0].payload
            fresh = self._mark_held(batch)
            self._pending = sorted(batch + self._pending, key=lambda p: p.arrived)
            self._cond.notify()
        if fresh:
            logger.warning("backend unavailable (%s); holding %d sample(s) for up to %g s (ride-through)",
                           _describe(error), len(fresh), self.ride_through_s)

    def _mark_held(self, items: list[_Pending[T]]) -> list[_Pending[T]]:
        """Mark samples as waiting for the backend (lock held); returns the newly marked."""
        fresh = [p for p in items if not p.held]
        for p in fresh:
            p.held = True
            p.future.held = True  # type: ignore[attr-defined]  # the server counts requests that rode through
        self.counts["samples_held"] += len(fresh)
        return fresh

    def _answer(self, batch: list[_Pending[T]], results: Sequence[Any]) -> None:
        rode = sum(1 for p in batch if p.held)
        if rode:
            with self._cond:
                self.counts["samples_rode_through"] += rode
        for p, r in zip(batch, results):
            _resolve(p, r)

    def _process(self, batch: list[_Pending[T]]) -> None:
        try:
            results = self._call(batch)
        except Exception as e:  # every error goes back to its caller
            if self._holding() and is_backend_unavailable(e):
                self._hold(batch, e)
            elif len(batch) > 1 and self.isolate_failures and not is_backend_unavailable(e):
                logger.warning(
                    "backend failed on a batch of %d (%s: %s); retrying one by one",
                    len(batch), type(e).__name__, e,
                )
                self._isolate(batch, e)
            else:
                for p in batch:
                    _resolve(p, error=e)
            return
        except BaseException as e:  # interpreter shutdown: do not leave callers hanging
            for p in batch:
                _resolve(p, error=e)
            raise
        self._answer(batch, results)

    def _isolate(self, batch: list[_Pending[T]], batch_error: Exception) -> None:
        """Retry a failed batch item by item; stop early when the backend, not a sample, fails."""
        same_failures = 0  # leading single-item retries that failed like the batch did
        any_ok = False
        for i, p in enumerate(batch):
            try:
                self._answer([p], self._call([p]))
                any_ok = True
            except Exception as e1:
                if self._holding() and is_backend_unavailable(e1):
                    self._hold(batch[i:], e1)
                    return
                _resolve(p, error=e1)
                if not any_ok and type(e1) is type(batch_error):
                    same_failures += 1
                if is_backend_unavailable(e1) or isinstance(e1, CircuitOpenError) or same_failures >= 2:
                    logger.warning("backend keeps failing (%s); failing the %d remaining samples of the batch",
                                   _describe(e1), len(batch) - i - 1)
                    for q in batch[i + 1:]:
                        _resolve(q, error=e1)
                    return
