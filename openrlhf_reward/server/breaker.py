"""A circuit breaker for the reward backend (thread-safe, no dependencies).

After ``threshold`` consecutive failed backend calls, or one call that failed because the
backend cannot be reached (connection refused or timed out after the backend's own
retries), the breaker *opens*: no backend call runs for ``cooldown_s``. When the cool-down
ends it is *half-open*: one backend call goes through as a probe; success closes it,
failure opens it again (the cool-down doubles, up to ``max_cooldown_s``). While it is open
the batcher holds requests (ride-through) rather than failing them; once the backend has
been failing for longer than ``down_after_s`` it is *down* and the server refuses new
requests at once, with the reason, until a probe succeeds.

Hand-written rather than ``pybreaker`` because the server needs the remaining cool-down
(for ``Retry-After``), the last failure (for ``/health``) and how long the backend has been
failing, and the unit it guards is a batch call on the batcher's thread.
"""

from __future__ import annotations

import math
import threading
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpenError(RuntimeError):
    """The backend is failing; ``retry_after`` seconds until the next probe."""

    backend_unavailable = True

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"the reward backend is failing ({reason}); retry in {math.ceil(retry_after)} s")
        self.retry_after = retry_after
        self.reason = reason


class CircuitBreaker:
    def __init__(self, threshold: int = 3, cooldown_s: float = 5.0, max_cooldown_s: float = 60.0,
                 down_after_s: float | None = None, clock=time.monotonic) -> None:
        if threshold < 1:
            raise ValueError(f"circuit breaker threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max(cooldown_s, max_cooldown_s)
        self.down_after_s = down_after_s  # None: never declared down
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._state = CLOSED
        self._opened_at = 0.0
        self._cooldown_s = cooldown_s
        self._probe_running = False
        self._failing_since: float | None = None  # first failure of the current outage
        self._declared_down = False  # a held request waited its whole budget in this outage
        self.reason = ""
        self.times_opened = 0

    def _refresh(self) -> None:  # lock held
        if self._state == OPEN and self._clock() - self._opened_at >= self._cooldown_s:
            self._state = HALF_OPEN
            self._probe_running = False

    @property
    def state(self) -> str:
        with self._lock:
            self._refresh()
            return self._state

    @property
    def failing_for(self) -> float:
        """Seconds since the breaker opened for the current outage (0 when closed)."""
        with self._lock:
            since = self._failing_since
            return 0.0 if since is None or self._state == CLOSED else self._clock() - since

    @property
    def down(self) -> bool:
        """The backend has been failing for longer than ``down_after_s``, or a request was held
        for its whole budget in this outage: refuse new requests until a probe succeeds."""
        if self._declared_down:
            return True
        return self.down_after_s is not None and self.failing_for > self.down_after_s

    def declare_down(self) -> None:
        """A held request ran out of budget: the outage is longer than the ride-through."""
        with self._lock:
            if self._state != CLOSED:
                self._declared_down = True

    def _wait(self, probe_out_s: float | None) -> float:
        """Seconds until the next probe: the cool-down's rest while open; while half-open with
        the probe out, ``probe_out_s`` (None: one cool-down); else 0."""
        with self._lock:
            self._refresh()
            if self._state == OPEN:
                return max(0.0, self._opened_at + self._cooldown_s - self._clock())
            if self._state == HALF_OPEN and self._probe_running:
                return self._cooldown_s if probe_out_s is None else probe_out_s
            return 0.0

    def wait_s(self) -> float:
        """Seconds until a backend call may run (0: now); a probe out may fail and reopen the
        breaker, so held work waits one cool-down for it."""
        return self._wait(None)

    def retry_after(self) -> float:
        """Seconds until the next probe may run (0 when closed), for a client's Retry-After."""
        return self._wait(1.0)

    def acquire(self) -> None:
        """Before a backend call: raise CircuitOpenError unless the call may run."""
        with self._lock:
            self._refresh()
            if self._state == CLOSED:
                return
            if self._state == HALF_OPEN and not self._probe_running:
                self._probe_running = True  # this call is the probe
                return
            wait = self._opened_at + self._cooldown_s - self._clock() if self._state == OPEN else 1.0
            raise CircuitOpenError(max(wait, 0.0), self.reason)

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._state = CLOSED
            self._probe_running = False
            self._cooldown_s = self.base_cooldown_s
            self._failing_since = None
            self._declared_down = False
            self.reason = ""

    def record_failure(self, reason: str, unavailable: bool = False) -> None:
        """A failed backend call. ``unavailable`` (the backend could not be reached, after
        its own retries) opens the breaker at once; other failures count to ``threshold``."""
        with self._lock:
            self._failures += 1
            self.reason = reason
            if self._state == HALF_OPEN:
                self._cooldown_s = min(self.max_cooldown_s, self._cooldown_s * 2)
                self._open()
            elif self._state == CLOSED and (unavailable or self._failures >= self.threshold):
                self._open()

    def _open(self) -> None:  # lock held
        if self._failing_since is None:
            self._failing_since = self._clock()
        self._state = OPEN
        self._opened_at = self._clock()
        self._probe_running = False
        self.times_opened += 1
