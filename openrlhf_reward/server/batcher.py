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
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from openrlhf_reward.server.breaker import CircuitBreaker, CircuitOpenError

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("openrlhf_reward.server")


@dataclass
class _Pending(Generic[T]):
    payload: T
    future: concurrent.futures.Future
    arrived: float
    length: int


class BatcherClosed(RuntimeError):
    """Submitted to a batcher that has been shut down."""


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
    dead endpoint). ``breaker`` (a :class:`CircuitBreaker`) sees every backend call and
    fails calls at once while it is open.
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
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.score_fn = score_fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.length_fn = length_fn
        self.length_aware = length_aware and length_fn is not None
        self.isolate_failures = isolate_failures
        self.on_batch = on_batch
        self.breaker = breaker
        self.call_started: float | None = None  # monotonic start of the running backend call
        self._cond = threading.Condition()
        self._pending: list[_Pending[T]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

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

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop accepting work; pending items are still scored before the worker exits."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker

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

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed and drained
                # Wait for more items until the batch is full or the oldest item has
                # waited max_wait (items that queued while the backend ran go at once).
                deadline = self._pending[0].arrived + self.max_wait_s
                while len(self._pending) < self.max_batch_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._take_batch()
            # Skip items whose caller went away (a cancelled future).
            batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
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

    def _process(self, batch: list[_Pending[T]]) -> None:
        try:
            results = self._call(batch)
        except Exception as e:  # every error goes back to its caller
            if len(batch) > 1 and self.isolate_failures and not is_backend_unavailable(e):
                logger.warning(
                    "backend failed on a batch of %d (%s: %s); retrying one by one",
                    len(batch), type(e).__name__, e,
                )
                self._isolate(batch, e)
            else:
                for p in batch:
                    p.future.set_exception(e)
            return
        except BaseException as e:  # interpreter shutdown: do not leave callers hanging
            for p in batch:
                p.future.set_exception(e)
            raise
        for p, r in zip(batch, results):
            p.future.set_result(r)

    def _isolate(self, batch: list[_Pending[T]], batch_error: Exception) -> None:
        """Retry a failed batch item by item; stop early when the backend, not a sample, fails."""
        same_failures = 0  # leading single-item retries that failed like the batch did
        any_ok = False
        for i, p in enumerate(batch):
            try:
                p.future.set_result(self._call([p])[0])
                any_ok = True
            except Exception as e1:
                p.future.set_exception(e1)
                if not any_ok and type(e1) is type(batch_error):
                    same_failures += 1
                if is_backend_unavailable(e1) or isinstance(e1, CircuitOpenError) or same_failures >= 2:
                    logger.warning("backend keeps failing (%s); failing the %d remaining samples of the batch",
                                   _describe(e1), len(batch) - i - 1)
                    for q in batch[i + 1:]:
                        q.future.set_exception(e1)
                    return
