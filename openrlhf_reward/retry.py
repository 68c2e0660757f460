"""Retry with exponential backoff for calls to HTTP services (teachers, reward servers,
judges), on tenacity, with one definition of what is worth retrying.

Transient: a connection error or timeout, or an HTTP answer 408, 409, 425, 429 or 5xx (the
service is busy, restarting or overloaded). Any other 4xx is the request's fault and is
raised at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

R = TypeVar("R")

__all__ = ["RETRY_STATUS", "TransientError", "async_call_with_retries", "call_with_retries", "is_transient",
           "retryable_status"]

RETRY_STATUS = frozenset({408, 409, 425, 429})


class TransientError(Exception):
    """A failed attempt worth retrying that is not an exception of its own (e.g. a 503 answer)."""


def retryable_status(status: int) -> bool:
    return status in RETRY_STATUS or status >= 500


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another try: :class:`TransientError`, an ``openai`` connection /
    timeout error or retryable status, an ``httpx`` transport error (connect, read, timeout)."""
    if isinstance(exc, TransientError):
        return True
    import sys

    openai = sys.modules.get("openai")  # only look at client libraries that are in use
    if openai is not None:
        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(exc, openai.APIStatusError):
            return retryable_status(exc.status_code)
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        if isinstance(exc, httpx.TransportError):
            return True
        if isinstance(exc, httpx.HTTPStatusError):
            return retryable_status(exc.response.status_code)
    return False


def _policy(
    *,
    max_tries: int,
    backoff: float = 1.0,
    backoff_max: float = 8.0,
    jitter: bool = False,
    retry_if: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[BaseException], Any] | None = None,
) -> dict[str, Any]:
    import tenacity

    wait = (tenacity.wait_random_exponential if jitter else tenacity.wait_exponential)(
        multiplier=backoff, max=backoff_max)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.outcome.exception())

    return dict(stop=tenacity.stop_after_attempt(max(1, max_tries)), wait=wait,
                retry=tenacity.retry_if_exception(retry_if), reraise=True, before_sleep=before_sleep)


def call_with_retries(fn: Callable[[], R], **policy: Any) -> R:
    """``fn()``, tried up to ``max_tries`` times while it raises a ``retry_if`` exception
    (default :func:`is_transient`), waiting ``backoff`` s (default 1), then twice as long each
    time up to ``backoff_max`` (default 8; ``jitter=True``: a random wait up to that, which
    spreads many clients' retries). The last exception is re-raised as is; others propagate at
    once. ``on_retry(exc)`` is called before each wait (counters, logs)."""
    import tenacity

    return tenacity.Retrying(**_policy(**policy))(fn)


async def async_call_with_retries(fn: Callable[[], Awaitable[R]], **policy: Any) -> R:
    """:func:`call_with_retries` for a coroutine function (waits with ``asyncio.sleep``)."""
    import tenacity

    return await tenacity.AsyncRetrying(**_policy(**policy))(fn)
