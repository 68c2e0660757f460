"""The one client layer for the HTTP services this package calls.

* OpenAI-compatible chat endpoints (the ``openai`` teacher, the ``judge`` backend):
  :class:`ChatClient` (for threads) and :class:`AsyncChatClient` (for an event loop). Both use
  the ``openai`` client's raw ``post`` (base URL, auth, typed errors) and return the answer's
  JSON: no per-request response models, which cost ~40% of the client's CPU per request and
  limit throughput at high concurrency. :func:`chat_body` builds the request.
* Reward servers (the ``remote`` backend): :class:`HttpClient`, plain ``httpx``.

Each client has one timeout per request, a connection limit, and one
:class:`~openrlhf_reward.retry.RetryPolicy` that every call goes through (the client
library's own retries are off). A chat call that fails for good raises :class:`EndpointError`
carrying the client's exception, so callers can raise from it and the reward server still
sees what it was (connection error, timeout, HTTP status) when it tells "unreachable" from
other failures.

Nothing here imports ``httpx`` or ``openai`` until a client is built.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openrlhf_reward.retry import RetryPolicy, TransientError, is_transient

__all__ = ["AsyncChatClient", "ChatClient", "EndpointError", "HttpClient", "chat_body", "resolve_api_key"]

OnRetry = Callable[[BaseException], Any]
_CHAT_PATH = "/chat/completions"


def resolve_api_key(api_key: str | None, env_var: str, placeholder: str | None = None) -> str | None:
    """``api_key``, else the environment variable ``env_var``, else ``placeholder`` (the openai
    client needs some key; a local vLLM server accepts any)."""
    return api_key or os.environ.get(env_var) or placeholder


def chat_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    temperature: float,
    max_tokens: int,
    max_tokens_field: str = "max_tokens",
    extra_body: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A chat-completions request. ``fields`` that are None are left out (the server's
    default); ``extra_body`` is merged last, so its keys win."""
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature,
                            max_tokens_field: max_tokens}
    body.update((k, v) for k, v in fields.items() if v is not None)
    if extra_body:
        body.update(extra_body)
    return body


class EndpointError(RuntimeError):
    """A chat call that failed for good: a non-retryable answer, or the retries ran out.

    ``error`` is the client's last exception (also ``__cause__``), ``attempts`` how many tries
    were made, ``transient`` whether ``error`` was retryable (so the retries ran out)."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.attempts = attempts
        self.transient = is_transient(error)


class _Chat:
    """What both chat clients share: the openai client, the policy, the error translation."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float, retry: RetryPolicy,
                 on_retry: OnRetry | None, asynchronous: bool, http_client: Any = None) -> None:
        import httpx
        import openai

        self.retry = retry
        self._on_retry = on_retry
        self._openai_error = openai.OpenAIError
        self._raw = httpx.Response  # cast_to for the raw post: the answer's JSON, no response model
        cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        # max_retries=0: the policy retries, so every client retries (and counts) the same way.
        self._client = cls(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0,
                           http_client=http_client)


class ChatClient(_Chat):
    """A chat endpoint for callers on threads: at most ``concurrency`` connections (a pool of
    that many, all kept alive), ``timeout`` s per request, ``retry`` around every call."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float, concurrency: int,
                 retry: RetryPolicy, on_retry: OnRetry | None = None) -> None:
        import httpx

        pool = httpx.Client(timeout=timeout, limits=_limits(concurrency))
        super().__init__(base_url, api_key, timeout=timeout, retry=retry, on_retry=on_retry,
                         asynchronous=False, http_client=pool)

    def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/chat/completions``; the answer's JSON. Raises
        :class:`EndpointError`, or ValueError when a 200 answer is not JSON (not retried)."""
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._client.post(_CHAT_PATH, body=body, cast_to=self._raw).json()

        try:
            return self.retry.call(attempt, self._on_retry)
        except self._openai_error as e:
            raise EndpointError(e, attempts) from e

    def model_ids(self) -> list[str]:
        """The models the endpoint lists (``GET /models``), in its order; one try."""
        try:
            return [m.id for m in self._client.models.list().data]
        except self._openai_error as e:
            raise EndpointError(e, 1) from e

    def close(self) -> None:
        self._client.close()


class AsyncChatClient(_Chat):
    """A chat endpoint for one event loop: at most ``concurrency`` calls in flight (a
    semaphore held per try, not during backoff), ``timeout`` s per request, ``retry`` around
    every call. Build it on the loop that uses it."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float, concurrency: int,
                 retry: RetryPolicy, on_retry: OnRetry | None = None) -> None:
        # The openai client's own connection pool: the semaphore already bounds the calls.
        super().__init__(base_url, api_key, timeout=timeout, retry=retry, on_retry=on_retry,
                         asynchronous=True)
        self._slots = asyncio.Semaphore(concurrency)

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`ChatClient.complete`, awaited."""
        attempts = 0

        async def attempt() -> Any:
            nonlocal attempts
            async with self._slots:
                attempts += 1
                resp = await self._client.post(_CHAT_PATH, body=body, cast_to=self._raw)
            return resp.json()

        try:
            return await self.retry.acall(attempt, self._on_retry)
        except self._openai_error as e:
            raise EndpointError(e, attempts) from e

    async def aclose(self) -> None:
        await self._client.close()


class HttpClient:
    """A plain HTTP client for JSON services that are not chat endpoints (reward servers):
    at most ``concurrency`` connections, ``timeout`` s per request, ``headers`` on every
    request. Retries are the caller's: it decides which answers are worth another try."""

    def __init__(self, *, timeout: float, concurrency: int, headers: Mapping[str, str] | None = None) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(headers=dict(headers or {}), timeout=timeout, limits=_limits(concurrency))

    def post(self, url: str, body: Any) -> Any:
        """POST ``body`` as JSON; the ``httpx.Response``. A failure to get an answer at all
        (connect, read, timeout) raises :class:`~openrlhf_reward.retry.TransientError` from
        the httpx exception."""
        try:
            return self._client.post(url, json=body)
        except self._httpx.HTTPError as e:
            raise TransientError(f"{url}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        self._client.close()


def _limits(concurrency: int) -> Any:
    import httpx

    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
