"""`remote`: score through a running reward server, the way OpenRLHF's trainer calls it.

Each sample is one ``POST`` of ``{"query": [prompt + response], "prompts": [prompt],
"labels": [{"requirements": [...], "instruction": prompt, "query": base query}]}`` with
many in flight (``concurrency``), a bearer token, and retries on connection errors and
5xx answers (4xx answers are the request's fault and are raised at once). So ``weval
--model remote-rm`` benchmarks exactly what GRPO trains against.

The requests also ask for per-requirement detail (``"return_details": true``, which
OpenRLHF never sends and this project's server answers), so results carry
``requirement_scores`` like a local backend's.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openrlhf_reward.clients import HttpClient, resolve_api_key
from openrlhf_reward.config import API_KEY_ENV, build_config
from openrlhf_reward.retry import RetryPolicy, TransientError, retryable_status
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult


class RemoteRewardError(RuntimeError):
    """The reward server refused a request or stayed unreachable after all retries."""


@dataclass
class RemoteConfig:
    url: str = field(default="", metadata={"help": "reward server URL with its path, e.g. http://127.0.0.1:5000/get_reward; several separated by ',' or '|' are used round-robin"})
    api_key: str | None = field(default=None, metadata={"help": f"bearer token (default: ${API_KEY_ENV})"})
    concurrency: int = field(default=32, metadata={"help": "requests in flight (OpenRLHF: the samples being generated)"})
    samples_per_request: int = field(default=1, metadata={"help": "samples per POST (OpenRLHF sends 1)"})
    timeout_s: float = field(default=180.0, metadata={"help": "per-request timeout (OpenRLHF's client uses 180 s)"})
    max_tries: int = field(default=5, metadata={"help": "attempts per request before failing (OpenRLHF: 5)"})
    retry_backoff_s: float = field(default=1.0, metadata={"help": "wait before the first retry, doubled each time up to 8 s"})
    return_details: bool = field(default=True, metadata={"help": "ask the server for per-requirement scores"})

    def __post_init__(self) -> None:
        if not self.url or not isinstance(self.url, str):
            raise ValueError("remote backend needs url=http://HOST:PORT/get_reward")
        for name in ("concurrency", "samples_per_request", "max_tries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"remote backend: {name} must be a positive integer, got {v!r}")


class RemoteScorer(Scorer):
    """A Scorer that asks a reward server (this project's, or OpenRLHF's ``serve_rm``)."""

    name = "remote"
    config_class = RemoteConfig
    needs_requirements: ClassVar[bool] = False  # the server on the other side decides

    def __init__(self, **kwargs: Any) -> None:
        self.config = build_config(RemoteConfig, kwargs, "remote")
        self.urls = [u.strip() for u in self.config.url.replace("|", ",").split(",") if u.strip()]
        for u in self.urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"remote backend: url {u!r} must start with http:// or https://")
        self._cycle = itertools.cycle(self.urls)
        self._cycle_lock = threading.Lock()
        key = resolve_api_key(self.config.api_key, API_KEY_ENV)
        n = self.config.concurrency
        self._client = HttpClient(timeout=self.config.timeout_s, concurrency=n,
                                  headers={"Authorization": f"Bearer {key}"} if key else None)
        # Retries as OpenRLHF's client does them: max_tries, backoff doubling up to 8 s.
        self._retry = RetryPolicy(max_tries=self.config.max_tries, backoff=self.config.retry_backoff_s, backoff_max=8.0)
        self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="remote-rm")

    def _next_url(self) -> str:
        with self._cycle_lock:
            return next(self._cycle)

    @staticmethod
    def payload(reqs: Sequence[ScoreRequest], return_details: bool = True) -> dict[str, Any]:
        """OpenRLHF's request shape for these samples (the prompt is the untemplated instruction)."""
        labels = []
        for r in reqs:
            label: dict[str, Any] = {
                "requirements": [q.to_dict() for q in r.requirements],
                "instruction": r.prompt,
            }
            if r.query is not None:
                label["query"] = r.query
            labels.append(label)
        body: dict[str, Any] = {
            "query": [r.prompt + r.response for r in reqs],
            "prompts": [r.prompt for r in reqs],
            "labels": labels,
        }
        if return_details:
            body["return_details"] = True
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config

        def attempt() -> dict[str, Any]:
            url = self._next_url()  # each try goes to the next server of a round-robin list
            resp = self._client.post(url, body)  # no answer at all: TransientError
            if resp.status_code == 200:
                try:
                    return resp.json()
                except ValueError:
                    raise TransientError(f"{url}: answer is not JSON") from None
            if 400 <= resp.status_code < 500 and not retryable_status(resp.status_code):
                raise RemoteRewardError(f"{url} refused the request ({resp.status_code}): {_message(resp)}")
            raise TransientError(f"{url}: HTTP {resp.status_code}: {_message(resp)}")

        try:
            return self._retry.call(attempt)
        except TransientError as e:
            raise RemoteRewardError(f"reward server failed after {cfg.max_tries} tries; last error: {e}") from e

    def _score_chunk(self, reqs: Sequence[ScoreRequest]) -> list[ScoreResult]:
        data = self._post(self.payload(reqs, self.config.return_details))
        rewards = data.get("rewards")
        if not isinstance(rewards, list):  # serve_rm-style servers may answer a scalar for one sample
            rewards = [rewards]
        if len(rewards) != len(reqs) or not all(isinstance(v, (int, float)) for v in rewards):
            raise RemoteRewardError(f"reward server answered {rewards!r} for {len(reqs)} sample(s)")
        details = data.get("details") if isinstance(data.get("details"), list) else None
        out = []
        for j, (r, v) in enumerate(zip(reqs, rewards)):
            d = details[j] if details and j < len(details) and isinstance(details[j], dict) else {}
            out.append(
                ScoreResult(
                    reward=float(v),
                    requirement_scores=dict(d.get("requirement_scores") or {}),
                    requirement_types=dict(d.get("requirement_types") or {q.id: q.type for q in r.requirements}),
                    info=dict(d.get("info") or {}),
                )
            )
        return out

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        k = self.config.samples_per_request
        chunks = [list(batch[i : i + k]) for i in range(0, len(batch), k)]
        results: list[ScoreResult] = []
        for chunk_results in self._pool.map(self._score_chunk, chunks):
            results.extend(chunk_results)
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _message(resp: Any) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return resp.text[:300]
