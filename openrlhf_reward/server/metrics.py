"""Counters for ``GET /metrics``: JSON (default) and Prometheus text via ``prometheus_client``.

One set of numbers, kept under a lock: :meth:`ServerMetrics.snapshot` returns them as JSON
and a ``prometheus_client`` collector exposes the same numbers (``?format=prometheus``),
with ``# TYPE`` lines, counters and summaries (``_sum`` / ``_count`` plus quantiles over
a sliding window of recent requests). ``prometheus_client`` is imported only when the
Prometheus form is asked for.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

from openrlhf_reward.protocol import fallback_count


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


class ServerMetrics:
    """Counters the server and the batcher update; ``snapshot()`` is what /metrics returns.

    Latencies and batch sizes are kept over a sliding window of the last ``window``
    requests/batches, so percentiles describe recent traffic; sums and counts are totals.
    """

    def __init__(self, backend: str, window: int = 10000) -> None:
        self.backend = backend
        self.started = time.time()
        self._lock = threading.Lock()
        self.requests_by_status: Counter[str] = Counter()
        self.samples_scored = 0
        self.batches = 0
        self.batch_failures = 0
        self.backend_seconds = 0.0
        self.batch_size_counts: Counter[int] = Counter()
        self.recovery_counts: Counter[str] = Counter()
        self.latency_sum = 0.0
        self.latency_count = 0
        self.unauthorized = 0
        self.unexpected_errors = 0
        self.refused_busy = 0
        self.refused_breaker = 0
        self.refused_down = 0
        self.ride_through_expired = 0
        self.rode_through = 0
        # degenerate-reward signals (numerators; samples/requirements/answers are denominators)
        self.samples = 0
        self.blank_responses = 0
        self.recovery_fallbacks = 0
        self.requirements = 0
        self.unscorable_requirements = 0
        self.judge_answers = 0
        self.judge_unparsed = 0
        self.judge_all_unparsed = 0
        self._latencies: deque[float] = deque(maxlen=window)
        self._batch_sizes: deque[int] = deque(maxlen=window)

    # ------------------------------------------------------------------ updates

    def record_request(self, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests_by_status[str(status)] += 1
            if status == 401:
                self.unauthorized += 1
            if seconds is not None:
                self._latencies.append(seconds)
                self.latency_sum += seconds
                self.latency_count += 1

    def record_unexpected(self) -> None:
        with self._lock:
            self.unexpected_errors += 1

    def record_refused(self, why: str) -> None:
        """A 503: ``busy`` (no slot within the budget), ``breaker`` (fail-fast mode), ``down``
        (the backend was declared down), ``expired`` (held past the ride-through budget)."""
        with self._lock:
            if why == "busy":
                self.refused_busy += 1
            elif why == "down":
                self.refused_down += 1
            elif why == "expired":
                self.ride_through_expired += 1
            else:
                self.refused_breaker += 1

    def record_rode_through(self) -> None:
        """A request answered 200 after waiting for a slot or for the backend to come back."""
        with self._lock:
            self.rode_through += 1

    def record_recovery(self, kinds: list[str]) -> None:
        with self._lock:
            self.recovery_counts.update(kinds)

    def record_samples(self, items: Sequence[Any], recovery: Sequence[str]) -> None:
        """Parsed samples (before scoring): blank responses (each item's ``blank``) and
        recovery fallbacks, as ``extra_logs`` counts them."""
        blank = sum(1 for it in items if it.blank)
        fallbacks = fallback_count(recovery)
        with self._lock:
            self.samples += len(items)
            self.blank_responses += blank
            self.recovery_fallbacks += fallbacks

    def record_results(self, flags: Sequence[Mapping[str, Any]]) -> None:
        """Scored samples: unscorable requirements and unparsed judge answers, from the
        :func:`~openrlhf_reward.protocol.sample_flags` the answer's ``extra_logs`` were made of."""
        with self._lock:
            for f in flags:
                self.requirements += f["n_requirements"]
                self.unscorable_requirements += f["n_unscorable"]
                self.judge_answers += f["n_judge_answers"]
                self.judge_unparsed += f["n_judge_unparsed"]
                self.judge_all_unparsed += int(f["judge_all_unparsed"])

    def record_batch(self, size: int, seconds: float, ok: bool) -> None:
        with self._lock:
            self.batches += 1
            self.backend_seconds += seconds
            if ok:
                self.samples_scored += size
                self.batch_size_counts[size] += 1
                self._batch_sizes.append(size)
            else:
                self.batch_failures += 1

    # ------------------------------------------------------------------ views

    def snapshot(self, queue_depth: int = 0, in_flight: int = 0, breaker_state: str = "closed",
                 ride_through: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._lock:
            lat = sorted(self._latencies)
            sizes = sorted(self._batch_sizes)
            by_status = dict(sorted(self.requests_by_status.items()))
            hist = {str(k): v for k, v in sorted(self.batch_size_counts.items())}
            out = {
                "backend": self.backend,
                "uptime_s": round(time.time() - self.started, 3),
                "requests": {
                    "total": sum(by_status.values()),
                    "by_status": by_status,
                    "in_flight": in_flight,
                    "unauthorized": self.unauthorized,
                    "unexpected_errors": self.unexpected_errors,
                    "refused_busy": self.refused_busy,
                    "refused_circuit_open": self.refused_breaker,
                    "refused_backend_down": self.refused_down,
                },
                "ride_through": {
                    "rode_through": self.rode_through,
                    "expired": self.ride_through_expired,
                    **(ride_through or {}),
                },
                "samples_scored": self.samples_scored,
                "queue_depth": queue_depth,
                "circuit_breaker": breaker_state,
                "batches": {
                    "total": self.batches,
                    "failed": self.batch_failures,
                    "mean_size": (sum(sizes) / len(sizes)) if sizes else None,
                    "max_size": sizes[-1] if sizes else None,
                    "p50_size": percentile([float(s) for s in sizes], 50),
                    "size_histogram": hist,
                    "backend_seconds": round(self.backend_seconds, 6),
                },
                "latency_ms": {
                    "count": len(lat),
                    "mean": (1000 * sum(lat) / len(lat)) if lat else None,
                    **{
                        f"p{q}": (None if (v := percentile(lat, q)) is None else 1000 * v)
                        for q in (50, 95, 99)
                    },
                },
                "response_recovery": dict(self.recovery_counts),
                "degenerate": {
                    "samples": self.samples,
                    "blank_responses": self.blank_responses,
                    "blank_response_rate": _rate(self.blank_responses, self.samples),
                    "recovery_fallbacks": self.recovery_fallbacks,
                    "recovery_fallback_rate": _rate(self.recovery_fallbacks, self.samples),
                    "requirements": self.requirements,
                    "unscorable_requirements": self.unscorable_requirements,
                    "unscorable_requirement_rate": _rate(self.unscorable_requirements, self.requirements),
                    "judge_answers": self.judge_answers,
                    "judge_unparsed": self.judge_unparsed,
                    "judge_unparsed_rate": _rate(self.judge_unparsed, self.judge_answers),
                    "judge_all_unparsed_samples": self.judge_all_unparsed,
                },
            }
        return out

    def prometheus(self, queue_depth: int = 0, in_flight: int = 0, breaker_state: str = "closed",
                   ride_through: dict[str, Any] | None = None) -> bytes:
        """The same numbers in Prometheus text format (``GET /metrics?format=prometheus``)."""
        from prometheus_client import CollectorRegistry, generate_latest

        # a registry per scrape: cheap, and the gauges passed in stay with this call
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, (queue_depth, in_flight, breaker_state), ride_through or {}))
        return generate_latest(registry)


class _Collector:
    """prometheus_client collector reading :class:`ServerMetrics` (one source of numbers)."""

    def __init__(self, m: ServerMetrics, state: tuple[int, int, str], ride_through: dict[str, Any]) -> None:
        self.m = m
        self.state = state
        self.ride_through = ride_through

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

        m = self.m
        queue_depth, in_flight, breaker_state = self.state
        with m._lock:
            lat = sorted(m._latencies)
            sizes = sorted(m._batch_sizes)
            by_status = dict(m.requests_by_status)
            c = dict(
                samples_scored=m.samples_scored, batches=m.batches, batch_failures=m.batch_failures,
                backend_seconds=m.backend_seconds, unauthorized=m.unauthorized,
                unexpected_errors=m.unexpected_errors, refused_busy=m.refused_busy,
                refused_circuit_open=m.refused_breaker, refused_backend_down=m.refused_down,
                ride_through_expired=m.ride_through_expired, rode_through=m.rode_through, samples=m.samples,
                blank_responses=m.blank_responses, recovery_fallbacks=m.recovery_fallbacks,
                requirements=m.requirements, unscorable_requirements=m.unscorable_requirements,
                judge_answers=m.judge_answers, judge_unparsed_answers=m.judge_unparsed,
                judge_all_unparsed_samples=m.judge_all_unparsed,
            )
            lat_sum, lat_count = m.latency_sum, m.latency_count
            size_sum, size_count = float(sum(k * v for k, v in m.batch_size_counts.items())), sum(m.batch_size_counts.values())
        req = CounterMetricFamily("reward_requests", "HTTP requests by status code", labels=["status"])
        for status, n in sorted(by_status.items()):
            req.add_metric([status], n)
        yield req
        docs = {
            "samples_scored": "samples scored by the backend",
            "batches": "backend calls",
            "batch_failures": "backend calls that raised",
            "backend_seconds": "seconds spent in backend calls",
            "unauthorized": "requests refused with 401 (missing or wrong API key)",
            "unexpected_errors": "requests that hit an unexpected server error (JSON 500 with an error id)",
            "refused_busy": "requests refused with 503 because --max-in-flight requests were running",
            "refused_circuit_open": "requests refused with 503 while the circuit breaker was open (ride-through off)",
            "refused_backend_down": "requests refused with 503 at once because the backend was declared down",
            "ride_through_expired": "requests answered 503 after being held for the whole ride-through budget",
            "rode_through": "requests answered after waiting for a slot or for the backend to come back",
            "samples": "samples parsed from requests",
            "blank_responses": "samples whose response is blank (nothing visible after stripping)",
            "recovery_fallbacks": "samples whose query did not start with the prompt (response recovered by fallback)",
            "requirements": "requirements in scored samples",
            "unscorable_requirements": "requirements the backend could not score (None)",
            "judge_answers": "judge answers read",
            "judge_unparsed_answers": "judge answers that did not parse",
            "judge_all_unparsed_samples": "samples where no judge answer parsed",
        }
        for key, value in c.items():
            yield CounterMetricFamily(f"reward_{key}", docs[key], value=value)
        for name, doc, num, den in (
            ("blank_response_rate", "share of samples with a blank response", c["blank_responses"], c["samples"]),
            ("recovery_fallback_rate", "share of samples recovered by fallback", c["recovery_fallbacks"], c["samples"]),
            ("unscorable_requirement_rate", "share of requirements not scorable", c["unscorable_requirements"], c["requirements"]),
            ("judge_unparsed_rate", "share of judge answers that did not parse", c["judge_unparsed_answers"], c["judge_answers"]),
        ):
            yield GaugeMetricFamily(f"reward_{name}", doc, value=(num / den) if den else 0.0)
        yield GaugeMetricFamily("reward_queue_depth", "samples waiting for the backend", value=queue_depth)
        yield GaugeMetricFamily("reward_in_flight", "requests being handled", value=in_flight)
        rt = self.ride_through
        yield GaugeMetricFamily("reward_held", "requests waiting for a slot plus samples waiting for the backend",
                                value=rt.get("held", 0))
        yield GaugeMetricFamily("reward_held_oldest_seconds", "age of the oldest held request",
                                value=rt.get("held_oldest_s") or 0.0)
        br = GaugeMetricFamily("reward_circuit_breaker_state", "1 for the current state", labels=["state"])
        for s in ("closed", "open", "half-open"):
            br.add_metric([s], 1.0 if s == breaker_state else 0.0)
        yield br
        for name, doc, window, total, count, scale in (
            ("reward_request_latency_seconds", "latency of answered (200) requests; quantiles over a recent window",
             lat, lat_sum, lat_count, 1.0),
            ("reward_batch_size", "samples per successful backend call; quantiles over a recent window",
             [float(s) for s in sizes], size_sum, size_count, 1.0),
        ):
            summary = Metric(name, doc, "summary")
            for q in (0.5, 0.95, 0.99):
                v = percentile(window, q * 100)
                if v is not None:
                    summary.add_sample(name, {"quantile": str(q)}, v * scale)
            summary.add_sample(name + "_sum", {}, total)
            summary.add_sample(name + "_count", {}, count)
            yield summary
