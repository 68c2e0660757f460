"""`openai`: a teacher behind any OpenAI-compatible chat-completions endpoint.

Works with ``vllm serve MODEL`` (base_url ``http://HOST:PORT/v1``), hosted APIs with a key
in an environment variable, or any server speaking the same protocol. Requests run in a
thread pool of ``concurrency`` workers; transient failures (connection errors, timeouts,
429 and 5xx answers) are retried with exponential backoff.

With ``json_schema=true`` (off by default), requests whose answer must be JSON (requirement
augmentation and extraction) carry ``response_format = {"type": "json_schema",
"json_schema": {"name", "schema", "strict": true}}``, the OpenAI structured-output field that
vLLM's OpenAI server also honours (it constrains decoding to the schema), so small teachers
stop failing on JSON syntax; the builders still validate every answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from openrlhf_reward.clients import ChatClient, EndpointError, chat_body, resolve_api_key
from openrlhf_reward.retry import RetryPolicy
from openrlhf_reward.teachers.base import (
    BatchTeacher,
    Messages,
    TeacherConfig,
    TeacherError,
    option,
)


@dataclass
class OpenAITeacherConfig(TeacherConfig):
    model: str = option("", "Model name sent with each request; empty: the first model the endpoint lists.")
    base_url: str = option("http://127.0.0.1:8000/v1", "Endpoint base URL, including /v1.")
    api_key: str | None = option(None, "API key; prefer api_key_env so keys stay out of logs and configs.")
    api_key_env: str = option(
        "OPENAI_API_KEY", "Environment variable holding the API key (unset: a placeholder key, fine for vLLM).")
    concurrency: int = option(16, "Maximum requests in flight.")
    timeout: float = option(120.0, "Per-request timeout in seconds.")
    max_retries: int = option(5, "Retries per request after a transient failure.")
    backoff: float = option(1.0, "First retry delay in seconds; doubles each retry.")
    backoff_max: float = option(30.0, "Upper bound of one retry delay in seconds.")
    top_p: float | None = option(None, "Nucleus sampling top_p (None: server default).")
    max_tokens_field: str = option(
        "max_tokens", "Request field for the token limit ('max_completion_tokens' for newer OpenAI models).")
    extra_body: dict[str, Any] | None = option(
        None, "Extra JSON fields merged into each request (e.g. chat_template_kwargs for vLLM).")
    json_schema: bool = option(
        False, "Send response_format json_schema on requests that must answer JSON (structured output; vLLM, OpenAI).")


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions ``response_format`` asking for answers that match ``schema``.

    The name is the schema's ``title`` (OpenAI requires one; letters, digits, ``_`` and ``-``).
    """
    name = str(schema.get("title") or "answer")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}


class OpenAITeacher(BatchTeacher):
    """Chat completions over HTTP (:class:`~openrlhf_reward.clients.ChatClient`): a thread
    pool of ``concurrency`` workers, timeouts and retries."""

    name = "openai"
    config_class = OpenAITeacherConfig
    minimums = {"concurrency": 1, "max_retries": 0}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c: OpenAITeacherConfig = self.config
        # jitter spreads the retries of many threads
        retry = RetryPolicy(max_tries=c.max_retries + 1, backoff=c.backoff, backoff_max=c.backoff_max, jitter=True)
        self._client = ChatClient(c.base_url, resolve_api_key(c.api_key, c.api_key_env, "EMPTY"), timeout=c.timeout,
                                  concurrency=c.concurrency, retry=retry)
        self._pool = ThreadPoolExecutor(max_workers=c.concurrency, thread_name_prefix="teacher")
        self._model_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._resolve_model()

    @property
    def uses_json_schema(self) -> bool:
        return self.config.json_schema

    def _resolve_model(self) -> str:
        with self._model_lock:
            if not self.config.model:
                try:
                    models = self._client.model_ids()
                except EndpointError as e:
                    raise TeacherError(
                        f"teacher 'openai': no model given and listing models at {self.config.base_url} failed: {e.error}"
                    ) from None
                if not models:
                    raise TeacherError(f"teacher 'openai': {self.config.base_url} serves no models")
                self.config.model = models[0]
            return self.config.model

    def _one(self, messages: Messages, model: str, temperature: float, max_tokens: int, seed: int | None,
             fmt: dict[str, Any] | None) -> str:
        c = self.config
        body = chat_body(model, messages, temperature=temperature, max_tokens=max_tokens,
                         max_tokens_field=c.max_tokens_field, seed=seed, top_p=c.top_p, extra_body=c.extra_body)
        if fmt is not None:
            body["response_format"] = fmt
        try:
            data = self._client.complete(body)
        except EndpointError as e:
            why = f"after {c.max_retries} retries" if e.transient else "(not retryable)"
            raise TeacherError(f"teacher 'openai' request to {c.base_url} failed {why}: {e}") from e.error
        except ValueError as e:  # a 200 answer whose body is not JSON
            raise TeacherError(f"teacher 'openai': {c.base_url} returned a non-JSON answer ({e})") from e
        try:
            return data["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TeacherError(
                f"teacher 'openai': unexpected answer from {c.base_url} (no choices[0].message): {str(data)[:300]}"
            ) from None

    def _answers(self, convs: list[Messages], seeds: list[int | None], temperature: float, max_tokens: int,
                 json_schema: Mapping[str, Any] | None = None) -> Iterator[tuple[int, str]]:
        """``json_schema`` (a JSON Schema dict) is sent as ``response_format`` so the endpoint
        constrains the answers to it."""
        model = self._resolve_model()  # once per batch: the requests share it and the format
        fmt = response_format(json_schema) if json_schema is not None else None
        futures: dict[Future, int] = {
            self._pool.submit(self._one, conv, model, temperature, max_tokens, s, fmt): i
            for i, (conv, s) in enumerate(zip(convs, seeds))
        }
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=futures.__getitem__):
                    yield futures[fut], fut.result()
        finally:
            for fut in pending:  # caller stopped early or a request failed: drop queued work
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
