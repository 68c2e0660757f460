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

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from openrlhf_reward.retry import call_with_retries, is_transient
from openrlhf_reward.teachers.base import (
    Messages,
    SeedArg,
    Teacher,
    TeacherError,
    build_config,
    per_item_seeds,
    strip_reasoning,
    validate_batch,
)


@dataclass
class OpenAITeacherConfig:
    model: str = field(
        default="", metadata={"help": "Model name sent with each request; empty: the first model the endpoint lists."}
    )
    base_url: str = field(
        default="http://127.0.0.1:8000/v1", metadata={"help": "Endpoint base URL, including /v1."}
    )
    api_key: str | None = field(
        default=None, metadata={"help": "API key; prefer api_key_env so keys stay out of logs and configs."}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API key (unset: a placeholder key, fine for vLLM)."},
    )
    concurrency: int = field(default=16, metadata={"help": "Maximum requests in flight."})
    timeout: float = field(default=120.0, metadata={"help": "Per-request timeout in seconds."})
    max_retries: int = field(default=5, metadata={"help": "Retries per request after a transient failure."})
    backoff: float = field(default=1.0, metadata={"help": "First retry delay in seconds; doubles each retry."})
    backoff_max: float = field(default=30.0, metadata={"help": "Upper bound of one retry delay in seconds."})
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling top_p (None: server default)."})
    max_tokens_field: str = field(
        default="max_tokens",
        metadata={"help": "Request field for the token limit ('max_completion_tokens' for newer OpenAI models)."},
    )
    extra_body: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "Extra JSON fields merged into each request (e.g. chat_template_kwargs for vLLM)."},
    )
    strip_reasoning: bool = field(default=True, metadata={"help": "Remove <think>...</think> blocks from answers."})
    json_schema: bool = field(
        default=False,
        metadata={"help": "Send response_format json_schema on requests that must answer JSON (structured output; vLLM, OpenAI)."},
    )


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions ``response_format`` asking for answers that match ``schema``.

    The name is the schema's ``title`` (OpenAI requires one; letters, digits, ``_`` and ``-``).
    """
    name = str(schema.get("title") or "answer")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}


class OpenAITeacher(Teacher):
    """Chat completions over HTTP with a concurrency limit, timeouts and retries."""

    name = "openai"
    config_class = OpenAITeacherConfig

    def __init__(self, **kwargs: Any) -> None:
        self.config: OpenAITeacherConfig = build_config(OpenAITeacherConfig, kwargs, self.name)
        c = self.config
        if c.concurrency < 1:
            raise ValueError(f"teacher 'openai': concurrency must be >= 1, got {c.concurrency}")
        if c.max_retries < 0:
            raise ValueError(f"teacher 'openai': max_retries must be >= 0, got {c.max_retries}")
        import httpx
        import openai

        self._openai = openai
        self._httpx = httpx
        key = c.api_key or os.environ.get(c.api_key_env) or "EMPTY"
        # Retries are ours (openrlhf_reward.retry): one retry set and backoff for every client.
        self._client = openai.OpenAI(
            base_url=c.base_url,
            api_key=key,
            timeout=c.timeout,
            max_retries=0,
            http_client=httpx.Client(
                limits=httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency),
                timeout=c.timeout,
            ),
        )
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
                    models = self._client.models.list().data
                except self._openai.OpenAIError as e:
                    raise TeacherError(
                        f"teacher 'openai': no model given and listing models at {self.config.base_url} failed: {e}"
                    ) from None
                if not models:
                    raise TeacherError(f"teacher 'openai': {self.config.base_url} serves no models")
                self.config.model = models[0].id
            return self.config.model

    def _one(
        self, messages: Messages, temperature: float, max_tokens: int, seed: int | None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> str:
        c = self.config
        body: dict[str, Any] = {
            "model": self._resolve_model(),
            "messages": messages,
            "temperature": temperature,
            c.max_tokens_field: max_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        if c.top_p is not None:
            body["top_p"] = c.top_p
        if c.extra_body:
            body.update(c.extra_body)
        if json_schema is not None:
            body["response_format"] = response_format(json_schema)

        def post() -> dict:
            # The client's documented raw `post` (auth, base URL, typed errors) without its
            # per-request parameter transform and response models: ~40% less client CPU per
            # request, which is what limits throughput at high concurrency.
            return self._client.post("/chat/completions", body=body, cast_to=self._httpx.Response).json()

        try:
            data = call_with_retries(post, max_tries=c.max_retries + 1, backoff=c.backoff, backoff_max=c.backoff_max,
                                     jitter=True)  # jitter spreads the retries of many threads
        except self._openai.OpenAIError as e:
            why = f"after {c.max_retries} retries" if is_transient(e) else "(not retryable)"
            raise TeacherError(
                f"teacher 'openai' request to {c.base_url} failed {why}: {type(e).__name__}: {e}"
            ) from e
        except ValueError as e:  # a 200 answer whose body is not JSON
            raise TeacherError(f"teacher 'openai': {c.base_url} returned a non-JSON answer ({e})") from e
        try:
            text = data["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TeacherError(
                f"teacher 'openai': unexpected answer from {c.base_url} (no choices[0].message): {str(data)[:300]}"
            ) from None
        return strip_reasoning(text) if c.strip_reasoning else text

    def chat(
        self,
        batch: Sequence[Messages],
        *,
        temperature: float = 0.7,
        max_tokens: int = 512,
        seed: SeedArg = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> list[str]:
        out: list[str | None] = [None] * len(batch)
        for i, text in self.chat_as_completed(batch, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                              json_schema=json_schema):
            out[i] = text
        return out  # type: ignore[return-value]

    def chat_as_completed(
        self,
        batch: Sequence[Messages],
        *,
        temperature: float = 0.7,
        max_tokens: int = 512,
        seed: SeedArg = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """As :meth:`Teacher.chat_as_completed`; ``json_schema`` (a JSON Schema dict) is sent as
        ``response_format`` so the endpoint constrains the answers to it."""
        convs = validate_batch(batch)
        seeds = per_item_seeds(seed, len(convs))
        if not convs:
            return
        self._resolve_model()
        futures: dict[Future, int] = {
            self._pool.submit(self._one, conv, temperature, max_tokens, s, json_schema): i
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
