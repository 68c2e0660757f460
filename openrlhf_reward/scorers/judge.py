"""`judge`: a generative judge behind an OpenAI-compatible chat endpoint (vLLM ``serve``, any API).

Two modes:

``verdict``
    One chat call per requirement (instruction, response, that requirement) asking for
    ``Yes`` or ``No`` (:func:`~openrlhf_reward.judge_prompts.verdict_messages`, the prompt the ``wevaljudge-*`` tasks use
    too). Requirement score = 1.0 / 0.0, or with ``logprobs=true`` the normalised verdict
    P(Yes) / (P(Yes) + P(No)) (:func:`~openrlhf_reward.judge_prompts.normalized_verdict`, the tasks' score) read from the
    first answer token's top log-probabilities.
    Reward = mean over the parsed verdicts. A sample without requirements gets one verdict
    against :data:`GENERIC_REQUIREMENT` (the reward; no per-requirement detail).

``criteria`` (CE-RM style pointwise scoring)
    First the judge derives evaluation criteria from the query alone (``ScoreRequest.query``,
    or the full prompt when the query is unknown). They are shared by every response to that
    query, kept in an LRU cache, and concurrent requests for the same query wait on ONE
    in-flight call, so a GRPO group of n samples asks once. Then each response is scored
    pointwise, 1-10, on every item: the sample's explicit requirements first (so
    per-requirement detail is kept), then the derived criteria. Item score = (s - 1) / 9;
    reward = mean over the parsed items.

``cerm`` (the CE-RM protocol, e.g. ``PKU-ONELab/CE-RM-4B``; see docs/cerm.md)
    One conversation per response, no system message, greedy, thinking disabled through
    ``chat_template_kwargs``. Turn 1 (from the query alone, shared by every response to it,
    cached and de-duplicated like ``criteria``): the judge analyses the query and lists
    criteria between ``[Start of Criteria]`` and ``[End of Criteria]``. Its whole answer stays
    in the conversation. Turn 2 (per response): per-criterion 0-5 and an overall 0-10 score,
    each as ``\boxed{N}``. Reward = the LAST boxed number, divided by 10 (``cerm_scale=unit``)
    or as is (``raw``). Here the "query" is the full instruction (``ScoreRequest.prompt``):
    the judge must see every requirement the response is held to. Labels need no
    requirements.

Every mode bounds its inputs: a response longer than ``max_response_chars`` is cut in the
middle (head and tail kept, a marker in between) before it goes into a prompt;
``ScoreResult.info["truncated"]`` counts it (0 or 1) and ``stats()["responses_truncated"]``
sums it.

Unparseable output is never turned into a score. A verdict that is not a leading Yes/No, an
item line that is missing or out of range, or criteria with no numbered line, is counted
(``stats()`` and ``ScoreResult.info``): the requirement's score is None and the reward is the
mean over what did parse. When nothing parsed the reward is ``unparsed_reward`` (default 0.0,
explicit, JSON-safe) and ``info["all_unparsed"]`` is True, so a server can report it.

Prompts and parsers live in :mod:`openrlhf_reward.judge_prompts` (shared with the
``wevaljudge-*`` tasks, the CE-RM agent and ``build-cerm``).

Transport: :class:`~openrlhf_reward.clients.AsyncChatClient` on a private event loop thread:
at most ``concurrency`` calls in flight, per-call ``timeout``, and ``max_retries`` with
exponential backoff (:mod:`openrlhf_reward.retry`: connection errors, timeouts,
408/409/425/429, 5xx). Other HTTP errors, or retries exhausted, raise :class:`JudgeError`
(a reward server answers 5xx and the trainer retries).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openrlhf_reward.clients import AsyncChatClient, EndpointError, chat_body, resolve_api_key
from openrlhf_reward.config import build_config
from openrlhf_reward.judge_prompts import (
    CERM_CRITERIA_TEMPLATE,
    CERM_EVAL_TEMPLATE,
    CRITERIA_PROMPT,
    CRITERIA_SYSTEM_PROMPT,
    DEFAULT_MAX_RESPONSE_CHARS,
    GENERIC_CRITERION,
    GENERIC_REQUIREMENT,
    SCORE_PROMPT,
    SCORE_SYSTEM_PROMPT,
    cerm_score,
    fill_template,
    parse_boxed_scores,
    parse_cerm_criteria,
    parse_criteria,
    parse_item_scores,
    parse_verdict,
    read_template,
    truncate_middle,
    verdict_messages,
    verdict_probability,
)
from openrlhf_reward.retry import RetryPolicy
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult
from openrlhf_reward.teachers.base import strip_reasoning

CERM_SCALES = ("unit", "raw")
MODES = ("verdict", "criteria", "cerm")


def _text(choice: dict[str, Any] | None) -> str | None:
    """The answer text of a chat choice (the answer's JSON), None when there is none."""
    return (choice.get("message") or {}).get("content") if choice else None


# --------------------------------------------------------------------------- config


@dataclass
class JudgeConfig:
    model: str = field(default="", metadata={"help": "model name served at the endpoint (required)"})
    base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={"help": "OpenAI-compatible API root, e.g. http://HOST:PORT/v1 (vLLM serve)"},
    )
    api_key: str | None = field(
        default=None, metadata={"help": "API key; prefer api_key_env so it stays out of configs"}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "environment variable read for the key when api_key is unset"},
    )
    mode: str = field(
        default="verdict",
        metadata={"help": "'verdict' (yes/no per requirement), 'criteria' (CE-RM-style 1-10 items) or 'cerm' (the CE-RM protocol)"},
    )
    concurrency: int = field(default=32, metadata={"help": "maximum chat calls in flight"})
    timeout: float = field(default=60.0, metadata={"help": "seconds per chat call"})
    batch_timeout: float = field(
        default=150.0,
        metadata={"help": "seconds one batch (all its calls and retries) may take; past it the endpoint counts as "
                          "hanging (unreachable): the reward server holds the batch and probes it (ride-through)"},
    )
    max_retries: int = field(
        default=3, metadata={"help": "retries of a failed call (connection, timeout, 429, 5xx)"}
    )
    backoff_initial: float = field(
        default=0.5, metadata={"help": "first retry delay in seconds; doubles each retry"}
    )
    backoff_max: float = field(default=8.0, metadata={"help": "upper bound on one retry delay"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature (0 = greedy)"})
    max_tokens: int = field(default=16, metadata={"help": "max tokens of a verdict answer"})
    logprobs: bool = field(
        default=False,
        metadata={"help": "verdict score = P(Yes)/(P(Yes)+P(No)) from top logprobs when present"},
    )
    top_logprobs: int = field(default=5, metadata={"help": "top-k log-probabilities requested"})
    criteria_max_tokens: int = field(
        default=512, metadata={"help": "max tokens of the criteria answer"}
    )
    score_max_tokens: int = field(
        default=256, metadata={"help": "max tokens of a pointwise scoring answer"}
    )
    max_criteria: int = field(default=5, metadata={"help": "criteria kept per query"})
    criteria_cache_size: int = field(
        default=4096, metadata={"help": "queries whose criteria are cached (LRU)"}
    )
    unparsed_reward: float = field(
        default=0.0, metadata={"help": "reward when nothing of a sample's judgement parsed"}
    )
    extra_body: dict | None = field(
        default=None,
        metadata={"help": "extra request fields, e.g. {'chat_template_kwargs': {'enable_thinking': false}}"},
    )
    max_response_chars: int = field(
        default=DEFAULT_MAX_RESPONSE_CHARS,
        metadata={"help": "responses longer than this are cut in the middle before prompting (0 = never)"},
    )
    cerm_scale: str = field(
        default="unit", metadata={"help": "cerm reward: 'unit' = overall score / 10, 'raw' = 0-10"}
    )
    cerm_criteria_max_tokens: int = field(
        default=4096, metadata={"help": "cerm: max tokens of the criteria turn"}
    )
    cerm_eval_max_tokens: int = field(
        default=8192, metadata={"help": "cerm: max tokens of an evaluation turn"}
    )
    criteria_template_file: str | None = field(
        default=None, metadata={"help": "cerm: file replacing the criteria turn's text (needs {query})"}
    )
    eval_template_file: str | None = field(
        default=None, metadata={"help": "cerm: file replacing the evaluation turn's text (needs {response})"}
    )
    report_raw: bool = field(
        default=False,
        metadata={"help": "put unparseable judge answers (first 200 chars) into ScoreResult.info"},
    )


class JudgeError(RuntimeError):
    """The judge endpoint failed (non-retryable HTTP error, or retries exhausted)."""


_STAT_KEYS = (
    "samples",  # samples scored
    "calls",  # chat calls answered
    "retries",  # calls retried after a transient error
    "failures",  # calls that raised JudgeError
    "verdicts",  # verdicts asked
    "verdicts_unparsed",  # verdicts that were not Yes/No
    "criteria_calls",  # criteria derivations sent to the judge
    "criteria_cache_hits",  # criteria served from the LRU cache
    "criteria_shared",  # requests that waited on an in-flight derivation
    "criteria_unparsed",  # derivations with no numbered line
    "items",  # pointwise items asked
    "items_unparsed",  # items without a valid 1-10 score
    "samples_all_unparsed",  # samples that got unparsed_reward
    "cerm_evals",  # cerm evaluation turns asked
    "cerm_unparsed",  # cerm evaluations without a final boxed 0-10 number
    "responses_truncated",  # responses cut to max_response_chars
)


class JudgeScorer(Scorer):
    """Generative judge over an OpenAI-compatible endpoint (see the module docstring)."""

    name = "judge"
    config_class: ClassVar[type] = JudgeConfig

    def __init__(self, **kwargs: Any) -> None:
        cfg: JudgeConfig = build_config(JudgeConfig, kwargs, "judge")
        if not cfg.model:
            raise ValueError("backend 'judge': option 'model' (the served model name) is required")
        if cfg.mode not in MODES:
            raise ValueError(f"backend 'judge': mode must be one of {MODES}, got {cfg.mode!r}")
        for name in ("concurrency", "max_tokens", "criteria_max_tokens", "score_max_tokens",
                     "max_criteria", "criteria_cache_size", "cerm_criteria_max_tokens",
                     "cerm_eval_max_tokens"):
            if int(getattr(cfg, name)) < 1:
                raise ValueError(f"backend 'judge': {name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.max_retries < 0 or cfg.timeout <= 0 or cfg.batch_timeout <= 0:
            raise ValueError("backend 'judge': max_retries must be >= 0, timeout and batch_timeout > 0")
        if cfg.cerm_scale not in CERM_SCALES:
            raise ValueError(f"backend 'judge': cerm_scale must be one of {CERM_SCALES}, got {cfg.cerm_scale!r}")
        if cfg.max_response_chars < 0:
            raise ValueError(f"backend 'judge': max_response_chars must be >= 0, got {cfg.max_response_chars}")
        try:
            self.criteria_template = read_template(
                cfg.criteria_template_file, CERM_CRITERIA_TEMPLATE, "query", "criteria_template_file")
            self.eval_template = read_template(
                cfg.eval_template_file, CERM_EVAL_TEMPLATE, "response", "eval_template_file")
        except ValueError as e:
            raise ValueError(f"backend 'judge': {e}") from None
        # The reward server asks a backend whether labels must carry requirements: CE-RM
        # derives its criteria from the query, so it needs none.
        self.needs_requirements: bool | None = False if cfg.mode == "cerm" else None
        self.config = cfg
        self._extra = self._extra_body()  # the config is fixed: one extra body for every call
        self._stats = dict.fromkeys(_STAT_KEYS, 0)
        self._cache: OrderedDict[str, tuple[list[str], bool]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="judge-loop", daemon=True)
        self._thread.start()
        self._closed = False
        asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result()

    async def _setup(self) -> None:
        cfg = self.config
        retry = RetryPolicy(max_tries=cfg.max_retries + 1, backoff=cfg.backoff_initial, backoff_max=cfg.backoff_max)
        self._client = AsyncChatClient(
            cfg.base_url, resolve_api_key(cfg.api_key, cfg.api_key_env, "EMPTY"), timeout=cfg.timeout,
            concurrency=cfg.concurrency, retry=retry, on_retry=self._count_retry)

    def _count_retry(self, _: BaseException) -> None:
        self._stats["retries"] += 1

    # ------------------------------------------------------------------ public API

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if self._closed:
            raise RuntimeError("judge scorer is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError("JudgeScorer.score called from its own event loop; use ascore")
        return asyncio.run_coroutine_threadsafe(self._score_batch(list(batch)), self._loop).result()

    async def ascore(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Awaitable ``score`` for callers running their own event loop."""
        fut = asyncio.run_coroutine_threadsafe(self._score_batch(list(batch)), self._loop)
        return await asyncio.wrap_future(fut)

    def stats(self) -> dict[str, int]:
        """Counters since construction (calls, retries, unparsed verdicts/items, cache use)."""
        return dict(self._stats)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    # ------------------------------------------------------------------ transport

    async def _chat(self, system: str, user: str, max_tokens: int, logprobs: bool = False,
                    messages: list[dict[str, str]] | None = None) -> dict[str, Any] | None:
        """One chat completion with retries; returns the first choice (the answer's JSON).
        ``messages`` replaces the (system, user) pair for multi-turn conversations."""
        cfg = self.config
        body = chat_body(
            cfg.model,
            messages or [{"role": "system", "content": system}, {"role": "user", "content": user}],
            temperature=cfg.temperature, max_tokens=max_tokens,
            logprobs=True if logprobs else None, top_logprobs=cfg.top_logprobs if logprobs else None,
            extra_body=self._extra,
        )
        try:
            data = await self._client.complete(body)
        except EndpointError as e:
            self._stats["failures"] += 1
            raise JudgeError(f"judge endpoint {cfg.base_url} failed after {e.attempts} attempt(s): {e}") from e.error
        self._stats["calls"] += 1
        choices = data.get("choices")
        return choices[0] if choices else None

    def _extra_body(self) -> dict[str, Any] | None:
        """``extra_body``; in cerm mode with thinking disabled through the chat template
        (vLLM's OpenAI server reads ``chat_template_kwargs``) unless extra_body says otherwise."""
        body = self.config.extra_body
        if self.config.mode != "cerm":
            return body
        body = dict(body or {})
        body["chat_template_kwargs"] = {"enable_thinking": False, **(body.get("chat_template_kwargs") or {})}
        return body

    # ------------------------------------------------------------------ scoring

    def _response(self, req: ScoreRequest, info: dict[str, Any]) -> str:
        """The response as it goes into a prompt: cut to ``max_response_chars``."""
        text, removed = truncate_middle(req.response, self.config.max_response_chars)
        info["truncated"] = int(removed > 0)
        if removed:
            info["truncated_chars"] = removed
            self._stats["responses_truncated"] += 1
        return text

    async def _score_batch(self, batch: list[ScoreRequest]) -> list[ScoreResult]:
        one = {"verdict": self._verdict_sample, "criteria": self._criteria_sample,
               "cerm": self._cerm_sample}[self.config.mode]
        tasks = [asyncio.ensure_future(one(req)) for req in batch]
        try:
            # A batch's calls queue behind the concurrency limit, each with its own retries, so
            # a hanging endpoint could hold one batch for far longer than any client waits.
            results = await asyncio.wait_for(asyncio.gather(*tasks), self.config.batch_timeout)
        except TimeoutError as e:
            for t in tasks:
                t.cancel()
            raise JudgeError(f"judge endpoint {self.config.base_url} did not answer a batch of {len(batch)} "
                             f"within {self.config.batch_timeout:g} s (batch_timeout)") from e
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        self._stats["samples"] += len(batch)
        return list(results)

    def _finish(self, req: ScoreRequest, scores: dict[str, float | None], parsed: list[float],
                n_unparsed: int, info: dict[str, Any]) -> ScoreResult:
        all_unparsed = not parsed
        if all_unparsed:
            self._stats["samples_all_unparsed"] += 1
        info.update(mode=self.config.mode, n_parsed=len(parsed), n_unparsed=n_unparsed,
                    all_unparsed=all_unparsed)
        return ScoreResult(
            reward=sum(parsed) / len(parsed) if parsed else float(self.config.unparsed_reward),
            requirement_scores=scores,
            requirement_types={r.id: r.type for r in req.requirements},
            info=info,
        )

    async def _verdict(self, req: ScoreRequest, requirement: str, response: str) -> tuple[float | None, str]:
        self._stats["verdicts"] += 1
        messages = verdict_messages(req.prompt or req.query or "", response, requirement)
        choice = await self._chat("", "", self.config.max_tokens, logprobs=self.config.logprobs,
                                  messages=messages)
        text = _text(choice)
        score: float | None = None
        if self.config.logprobs and choice is not None:
            score = verdict_probability(choice.get("logprobs"))
        if score is None:
            v = parse_verdict(text)
            score = None if v is None else float(v)
        if score is None:
            self._stats["verdicts_unparsed"] += 1
        return score, text or ""

    async def _verdict_sample(self, req: ScoreRequest) -> ScoreResult:
        reqs = list(req.requirements)
        texts = [r.text for r in reqs] or [GENERIC_REQUIREMENT]
        info: dict[str, Any] = {}
        response = self._response(req, info)
        outs = await asyncio.gather(*(self._verdict(req, t, response) for t in texts))
        scores = {r.id: s for r, (s, _) in zip(reqs, outs)}
        parsed = [s for s, _ in outs if s is not None]
        bad = [i for i, (s, _) in enumerate(outs) if s is None]
        if bad:
            info["unparsed"] = [reqs[i].id if reqs else "generic" for i in bad]
            if self.config.report_raw:
                info["raw"] = [outs[i][1][:200] for i in bad]
        return self._finish(req, scores, parsed, len(bad), info)

    # criteria: LRU + in-flight de-duplication, all on the private loop (single-threaded).

    def _criteria_task(self, query: str) -> asyncio.Future:
        if query in self._cache:
            self._cache.move_to_end(query)
            self._stats["criteria_cache_hits"] += 1
            fut = self._loop.create_future()
            fut.set_result(self._cache[query])
            return fut
        task = self._inflight.get(query)
        if task is not None:
            self._stats["criteria_shared"] += 1
            return task
        task = self._loop.create_task(self._derive_criteria(query))
        self._inflight[query] = task
        task.add_done_callback(lambda t, q=query: self._criteria_done(q, t))
        return task

    def _criteria_done(self, query: str, task: asyncio.Task) -> None:
        self._inflight.pop(query, None)
        if task.cancelled() or task.exception() is not None:
            return  # failures are not cached: the next request asks again
        self._cache[query] = task.result()
        while len(self._cache) > self.config.criteria_cache_size:
            self._cache.popitem(last=False)

    async def _derive_criteria(self, query: str) -> tuple[Any, bool]:
        self._stats["criteria_calls"] += 1
        if self.config.mode == "cerm":
            return await self._derive_cerm_criteria(query)
        user = CRITERIA_PROMPT.format(query=query, max_criteria=self.config.max_criteria)
        choice = await self._chat(CRITERIA_SYSTEM_PROMPT, user, self.config.criteria_max_tokens)
        text = _text(choice)
        criteria = parse_criteria(text, self.config.max_criteria)
        if not criteria:
            self._stats["criteria_unparsed"] += 1
        return criteria, bool(criteria)

    async def _criteria_sample(self, req: ScoreRequest) -> ScoreResult:
        query = req.query or req.prompt
        # shield: one sample being cancelled must not cancel the derivation others wait on
        criteria, criteria_ok = await asyncio.shield(self._criteria_task(query))
        reqs = list(req.requirements)
        items = [r.text for r in reqs] + list(criteria)
        if not items:
            items = [GENERIC_CRITERION]
        info: dict[str, Any] = {}
        user = SCORE_PROMPT.format(
            instruction=req.prompt or req.query or "",
            items="\n".join(f"{i}. {t}" for i, t in enumerate(items, 1)),
            response=self._response(req, info),
            n_items=len(items),
        )
        self._stats["items"] += len(items)
        choice = await self._chat(SCORE_SYSTEM_PROMPT, user, self.config.score_max_tokens)
        text = _text(choice)
        raw = parse_item_scores(text, len(items))
        norm = [None if s is None else (s - 1.0) / 9.0 for s in raw]
        n_bad = sum(s is None for s in norm)
        self._stats["items_unparsed"] += n_bad
        scores = {r.id: norm[i] for i, r in enumerate(reqs)}
        info.update({
            "criteria": list(criteria),
            "criteria_parsed": criteria_ok,
            "criterion_scores": norm[len(reqs):],
        })
        if n_bad:
            info["unparsed"] = [
                reqs[i].id if i < len(reqs) else f"criterion{i - len(reqs) + 1}"
                for i, s in enumerate(norm) if s is None
            ]
            if self.config.report_raw:
                info["raw"] = (text or "")[:200]
        return self._finish(req, scores, [s for s in norm if s is not None], n_bad, info)

    # cerm: the CE-RM two-turn protocol. The criteria turn is cached per query (the cache and
    # in-flight de-duplication above); its value is (the judge's whole answer, tags found).

    def _cerm_criteria_messages(self, query: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": fill_template(self.criteria_template, query=query)}]

    async def _derive_cerm_criteria(self, query: str) -> tuple[str, bool]:
        choice = await self._chat("", "", self.config.cerm_criteria_max_tokens,
                                  messages=self._cerm_criteria_messages(query))
        text = _text(choice) or ""
        ok = parse_cerm_criteria(text) is not None
        if not ok:
            self._stats["criteria_unparsed"] += 1
        # The whole answer (analysis included) stays in the conversation, as in the protocol;
        # only a leading <think> block is dropped.
        return strip_reasoning(text), ok

    async def _cerm_sample(self, req: ScoreRequest) -> ScoreResult:
        query = req.prompt or req.query or ""
        answer, criteria_ok = await asyncio.shield(self._criteria_task(query))
        info: dict[str, Any] = {}
        response = self._response(req, info)
        messages = self._cerm_criteria_messages(query) + [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": fill_template(self.eval_template, response=response, query=query)},
        ]
        self._stats["cerm_evals"] += 1
        choice = await self._chat("", "", self.config.cerm_eval_max_tokens, messages=messages)
        text = _text(choice)
        boxed = parse_boxed_scores(text)
        score = cerm_score(boxed)
        if choice is not None and choice.get("finish_reason") == "length":
            # cut off by its budget: the last box is a per-criterion score, not the overall one
            score = None
            info["cut_off"] = True
        info.update(criteria_parsed=criteria_ok, overall=score,
                    criterion_scores=boxed[:-1] if score is not None else boxed)
        parsed: list[float] = []
        if score is None:
            self._stats["cerm_unparsed"] += 1
            info["unparsed"] = ["overall"]
            if self.config.report_raw:
                info["raw"] = (text or "")[-200:]
        else:
            parsed.append(score / 10.0 if self.config.cerm_scale == "unit" else score)
        # CE-RM scores the response as a whole: requirements get no score of their own.
        scores: dict[str, float | None] = {r.id: None for r in req.requirements}
        return self._finish(req, scores, parsed, 0 if parsed else 1, info)
