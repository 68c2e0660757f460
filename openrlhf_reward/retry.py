"""The one retry policy for calls to HTTP services (teachers, reward servers, judges): exponential
backoff on tenacity, with one definition of what is worth retrying.

Transient: a connection error or timeout, or an HTTP answer 408, 409, 425, 429 or 5xx (the
service is busy, restarting or overloaded). Any other 4xx is the request's fault and is
raised at once.

:class:`RetryPolicy` is what the clients (:mod:`openrlhf_reward.clients`) hold;
:func:`call_with_retries` / :func:`async_call_with_retries` are one-off shorthands for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")

__all__ = ["RETRY_STATUS", "RetryPolicy", "TransientError", "async_call_with_retries", "call_with_retries",
           "is_transient", "retryable_status"]

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


@dataclass(frozen=True)
class RetryPolicy:
    """Try a call up to ``max_tries`` times while it raises a ``retry_if`` exception (default
    :func:`is_transient`), waiting ``backoff`` s, then twice as long each time up to
    ``backoff_max`` (``jitter=True``: a random wait up to that, which spreads many clients'
    retries). The last exception is re-raised as is; others propagate at once."""

    max_tries: int = 1
    backoff: float = 1.0
    backoff_max: float = 8.0
    jitter: bool = False
    retry_if: Callable[[BaseException], bool] = is_transient

    def _tenacity(self, on_retry: Callable[[BaseException], Any] | None) -> dict[str, Any]:
        import tenacity

        wait = (tenacity.wait_random_exponential if self.jitter else tenacity.wait_exponential)(
            multiplier=self.backoff, max=self.backoff_max)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None:
                on_retry(state.outcome.exception())

        return dict(stop=tenacity.stop_after_attempt(max(1, self.max_tries)), wait=wait,
                    retry=tenacity.retry_if_exception(self.retry_if), reraise=True, before_sleep=before_sleep)

    def call(self, fn: Callable[[], R], on_retry: Callable[[BaseException], Any] | None = None) -> R:
        """``fn()`` under this policy; ``on_retry(exc)`` runs before each wait (counters, logs)."""
        import tenacity

        return tenacity.Retrying(**self._tenacity(on_retry))(fn)

    async def acall(self, fn: Callable[[], Awaitable[R]],
                    on_retry: Callable[[BaseException], Any] | None = None) -> R:
        """:meth:`call` for a coroutine function (waits with ``asyncio.sleep``)."""
        import tenacity

        return await tenacity.AsyncRetrying(**self._tenacity(on_retry))(fn)


def call_with_retries(fn: Callable[[], R], *, on_retry: Callable[[BaseException], Any] | None = None,
                      **policy: Any) -> R:
    """``RetryPolicy(**policy).call(fn, on_retry)``; ``backoff`` defaults to 1 s, ``backoff_max``
    to 8 s."""
    return RetryPolicy(**policy).call(fn, on_retry)


async def async_call_with_retries(fn: Callable[[], Awaitable[R]], *,
                                  on_retry: Callable[[BaseException], Any] | None = None, **policy: Any) -> R:
    """:func:`call_with_retries` for a coroutine function (waits with ``asyncio.sleep``)."""
    return await RetryPolicy(**policy).acall(fn, on_retry)
