"""OpenRLHF 0.11.2 agent file for CE-RM training: ``--train.agent_func_path <this file>``.

OpenRLHF loads this file by path in every vLLM rollout actor and builds ``AgentExecutor()``
once per actor; ``execute`` runs once per sample (``n_samples_per_prompt`` per row). The
executor is OpenRLHF's own :class:`MultiTurnAgentExecutor` (tokenisation, action ranges,
rollout log-probs, truncation) driving :class:`CermAgentInstance`; this subclass only

* caps each turn's tokens (criteria, evaluation) through a thin engine wrapper that also
  remembers the last generation (its token ids are needed for the counterpart context and
  to see whether the model closed its turn), and
* exposes the tokenizer and engine to the instance through a context variable (OpenRLHF
  builds instances without arguments; every ``execute`` is its own asyncio task, so each
  sees its own context).

The rollout and the reward are described in :mod:`openrlhf_reward.cerm.rollout`; the
settings come from ``CERM_*`` environment variables (``CermAgentConfig``).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any

try:
    import openrlhf_reward  # noqa: F401
except ImportError:  # loaded by path from a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from openrlhf_reward.cerm.rollout import (
    CermAgentConfig,
    criteria_ok,
    eval_turn_text,
    malformed_criteria,
    next_turn_feedback,
    pair_reward,
    parse_label,
    strip_special,
)
from openrlhf_reward.judge_prompts import parse_cerm_score

#: Tokens an evaluation turn needs at the least; with less room left the trajectory ends.
MIN_EVAL_TOKENS = 16


class _TurnEngine:
    """Wraps the rollout engine: caps each turn's max_tokens, remembers the last call."""

    def __init__(self, engine: Any, cfg: CermAgentConfig) -> None:
        self.engine = engine
        self.cfg = cfg
        self.turn = 0
        self.last_prompt: list[int] = []
        self.last_output: Any = None

    async def generate(self, prompt_token_ids: list[int], sampling_params: Any, multi_modal_data: Any = None) -> Any:
        cap = self.cfg.criteria_max_tokens if self.turn == 0 else self.cfg.eval_max_tokens
        if sampling_params.max_tokens is None or sampling_params.max_tokens > cap:
            sampling_params.max_tokens = cap
        out = await self.engine.generate(prompt_token_ids, sampling_params, multi_modal_data=multi_modal_data)
        self.turn += 1
        self.last_prompt = list(prompt_token_ids)
        self.last_output = out
        return out


class _Rollout:
    """What one ``execute`` call shares with its agent instance."""

    def __init__(self, cfg: CermAgentConfig, template: str, tokenizer: Any, engine: _TurnEngine, max_length: int) -> None:
        self.cfg = cfg
        self.template = template
        self.tokenizer = tokenizer
        self.engine = engine
        self.max_length = max_length

    def last_special_text(self) -> str | None:
        """The last generated token's text when it is a special (end-of-turn) token."""
        ids = list(self.engine.last_output.outputs[0].token_ids)
        if ids and ids[-1] in set(self.tokenizer.all_special_ids):
            return self.tokenizer.decode([ids[-1]], skip_special_tokens=False)
        return None

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer(text=text, add_special_tokens=False)["input_ids"]


_ROLLOUT: contextvars.ContextVar[_Rollout] = contextvars.ContextVar("cerm_rollout")


def _reward(value: float) -> Any:
    import torch

    return torch.tensor(float(value))


class CermAgentInstance(AgentInstanceBase):
    """Turn 1: criteria (from the row's prompt). Turn 2: one pointwise evaluation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.turn = 0
        self.label = None
        self.counterparts: list[asyncio.Task] = []

    async def reset(self, states: dict, **kwargs: Any) -> dict:
        self.label = parse_label(states["label"])
        return {"observation": states["observation"]}

    def _done(self, reward: float, logs: dict[str, float]) -> dict:
        # rewards: a tensor (OpenRLHF calls .item()); scores: a float, as OpenRLHF's own default
        return {"rewards": _reward(reward), "scores": float(reward), "environment_feedback": "",
                "done": True, "extra_logs": logs}

    async def step(self, states: dict, **kwargs: Any) -> dict:
        ro = _ROLLOUT.get()
        action = strip_special(states["action_text"], ro.tokenizer)
        self.turn += 1
        if self.turn == 1:
            return self._after_criteria(ro, action, states["sampling_params"])
        try:
            # an evaluation cut off by its cap has no overall score (its last box is a criterion's)
            cut = ro.engine.last_output.outputs[0].finish_reason == "length"
            own = None if cut else parse_cerm_score(action)
            others = [] if own is None else [parse_cerm_score(t) for t in await asyncio.gather(*self.counterparts)]
        finally:
            for t in self.counterparts:
                t.cancel()
        return self._done(*pair_reward(ro.cfg, self.label.side, own, others))

    def _after_criteria(self, ro: _Rollout, action: str, sampling_params: Any) -> dict:
        label = self.label
        if not criteria_ok(action):
            return self._done(*malformed_criteria(ro.cfg, label.side))
        end = ro.last_special_text()
        feedback = next_turn_feedback(ro.tokenizer, eval_turn_text(ro.cfg, ro.template, label, label.side), end,
                                      ro.cfg.enable_thinking)
        context = ro.engine.last_prompt + list(ro.engine.last_output.outputs[0].token_ids)
        if ro.max_length - len(context) - len(ro.tokens(feedback)) < MIN_EVAL_TOKENS:
            return self._done(*malformed_criteria(ro.cfg, label.side))  # no room left to evaluate
        # The other side, under the same criteria, each in its own context (never in this one).
        other = next_turn_feedback(ro.tokenizer, eval_turn_text(ro.cfg, ro.template, label, label.other), end,
                                   ro.cfg.enable_thinking)
        ids = context + ro.tokens(other)
        room = ro.max_length - len(ids)
        if room >= MIN_EVAL_TOKENS:
            params = deepcopy(sampling_params)
            params.max_tokens = min(ro.cfg.eval_max_tokens, room)
            if getattr(params, "logprobs", None) is not None:
                params.logprobs = None
            self.counterparts = [
                asyncio.ensure_future(self._generate_text(ro, ids, params)) for _ in range(ro.cfg.counterparts)
            ]
        return {"rewards": _reward(0.0), "scores": 0.0, "environment_feedback": feedback, "done": False}

    @staticmethod
    async def _generate_text(ro: _Rollout, ids: list[int], params: Any) -> str:
        out = await ro.engine.engine.generate(ids, deepcopy(params))
        o = out.outputs[0]
        # A counterpart cut off by its budget has no final score: it is not comparable.
        return "" if o.finish_reason == "length" else strip_special(o.text, ro.tokenizer)


class AgentExecutor(MultiTurnAgentExecutor):
    """The executor OpenRLHF loads from this file."""

    def __init__(self) -> None:
        super().__init__(CermAgentInstance)
        self.config = CermAgentConfig.from_env()
        self.template = self.config.eval_template()

    async def execute(self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None):
        engine = _TurnEngine(llm_engine, self.config)
        token = _ROLLOUT.set(_Rollout(self.config, self.template, hf_tokenizer, engine, max_length))
        try:
            return await super().execute(prompt, label, sampling_params, max_length, hf_tokenizer, engine, images)
        finally:
            _ROLLOUT.reset(token)
