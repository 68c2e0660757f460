"""The CE-RM two-stage rollout, independent of OpenRLHF (its executor lives in ``agent.py``).

One OpenRLHF trajectory = one prompt row, which names the pair and the SIDE it evaluates:

1. turn 1 (trained): criteria from the query alone (the row's prompt is the criteria turn);
2. turn 2 (trained): the evaluation of this row's side (chosen OR rejected) under those
   criteria -- the context holds the query, the criteria and this one response only;
3. off the trajectory (not trained): ``counterparts`` evaluations of the OTHER side under the
   same criteria, each generated in its own context; their scores only enter the reward.

Reward (one scalar per trajectory, so the criteria tokens share the evaluation's credit):
mean over the parsed counterparts of 1 (this side's score orders the pair correctly),
``tie_reward`` (equal scores) or 0 (wrong order); ``malformed_reward`` when the criteria
lack their tags or this evaluation has no final boxed 0-10 score; ``no_counterpart_reward``
when no counterpart parsed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openrlhf_reward.judge_prompts import (
    CERM_EVAL_TEMPLATE,
    fill_template,
    parse_cerm_criteria,
    truncate_middle,
)

SIDES = ("chosen", "rejected")
ENV_PREFIX = "CERM_"
#: Keys of every trajectory's extra_logs (OpenRLHF needs the same keys in every sample).
LOG_KEYS = (
    "cerm_malformed_criteria",
    "cerm_malformed_eval",
    "cerm_correct",
    "cerm_tie",
    "cerm_counterparts_parsed",
    "cerm_score",
    "cerm_side_chosen",
)


class LabelError(ValueError):
    """A prompt row's label that the agent cannot use."""


@dataclass
class CermAgentConfig:
    """Settings of the rollout; read from ``CERM_<NAME>`` environment variables (the agent
    class is built by OpenRLHF without arguments)."""

    counterparts: int = field(default=2, metadata={"help": "evaluations of the other side per trajectory (reward only, not trained)"})
    tie_reward: float = field(default=0.0, metadata={"help": "reward share of a counterpart with the same score"})
    malformed_reward: float = field(default=-1.0, metadata={"help": "reward when criteria tags or the final boxed score are missing"})
    no_counterpart_reward: float = field(default=0.0, metadata={"help": "reward when no counterpart evaluation parsed"})
    criteria_max_tokens: int = field(default=2048, metadata={"help": "cap on the criteria turn's tokens"})
    eval_max_tokens: int = field(default=4096, metadata={"help": "cap on an evaluation turn's tokens"})
    max_response_chars: int = field(default=16000, metadata={"help": "responses are cut in the middle to this length (0 = never)"})
    eval_template_file: str | None = field(default=None, metadata={"help": "file replacing the evaluation turn's text (needs {response})"})
    enable_thinking: bool = field(default=False, metadata={"help": "passed to the chat template when the evaluation turn is rendered"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CermAgentConfig:
        from openrlhf_reward.config import build_config

        env = os.environ if environ is None else environ
        given = {}
        for f in dataclasses.fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                given[f.name] = env[key]
        cfg = build_config(cls, given, "cerm", kind="agent")
        if cfg.counterparts < 1:
            raise ValueError(f"{ENV_PREFIX}COUNTERPARTS must be >= 1, got {cfg.counterparts}")
        return cfg

    def eval_template(self) -> str:
        if not self.eval_template_file:
            return CERM_EVAL_TEMPLATE
        with open(self.eval_template_file, encoding="utf-8") as fh:
            text = fh.read()
        if "{response}" not in text:
            raise ValueError(f"{self.eval_template_file}: the evaluation template lacks {{response}}")
        return text


@dataclass(frozen=True)
class PairLabel:
    """The label of a CE-RM prompt row."""

    query: str
    chosen: str
    rejected: str
    side: str

    def response(self, side: str) -> str:
        return self.chosen if side == "chosen" else self.rejected

    @property
    def other(self) -> str:
        return "rejected" if self.side == "chosen" else "chosen"


def parse_label(label: Any) -> PairLabel:
    """A row's label (a dict, or its JSON text) -> :class:`PairLabel`; LabelError names the field."""
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError as e:
            raise LabelError(f"label is not JSON: {e}") from None
    if not isinstance(label, Mapping):
        raise LabelError(f"label must be an object, got {type(label).__name__}")
    for key in ("query", "chosen", "rejected"):
        if not isinstance(label.get(key), str) or not label[key].strip():
            raise LabelError(f"label field {key!r} must be a non-empty string")
    side = label.get("side")
    if side not in SIDES:
        raise LabelError(f"label field 'side' must be 'chosen' or 'rejected', got {side!r}")
    return PairLabel(label["query"], label["chosen"], label["rejected"], side)


def eval_turn_text(cfg: CermAgentConfig, template: str, label: PairLabel, side: str) -> str:
    response, _ = truncate_middle(label.response(side), cfg.max_response_chars)
    return fill_template(template, response=response, query=label.query)


_SENTINEL = "\u2063CERM-ASSISTANT-TURN\u2063"


def next_turn_feedback(tokenizer: Any, user_text: str, last_token_text: str | None, enable_thinking: bool = False) -> str:
    """The text that follows an assistant turn to open the next user turn and the next
    assistant turn, rendered by the tokenizer's own chat template.

    ``last_token_text`` is the assistant action's last token when it is a special token
    (the end-of-turn marker the model generated); it is already in the context, so it is
    not repeated.
    """
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": _SENTINEL},
        {"role": "user", "content": user_text},
    ]
    full = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )
    if _SENTINEL not in full:
        raise ValueError("the tokenizer's chat template dropped the assistant turn; CE-RM needs a multi-turn template")
    tail = full.split(_SENTINEL, 1)[1]
    if last_token_text and tail.startswith(last_token_text):
        tail = tail[len(last_token_text):]
    return tail


def strip_special(text: str, tokenizer: Any) -> str:
    """The action text without special tokens (OpenRLHF keeps them: skip_special_tokens=False)."""
    for tok in getattr(tokenizer, "all_special_tokens", None) or ():
        if tok:
            text = text.replace(tok, "")
    return text


def criteria_ok(action_text: str) -> bool:
    return parse_cerm_criteria(action_text) is not None


def pair_reward(cfg: CermAgentConfig, side: str, own: float | None, counterparts: list[float | None]) -> tuple[float, dict[str, float]]:
    """The trajectory's reward and its logs, given this side's score and the other side's."""
    logs = dict.fromkeys(LOG_KEYS, 0.0)
    logs["cerm_side_chosen"] = float(side == "chosen")
    if own is None:
        logs["cerm_malformed_eval"] = 1.0
        return float(cfg.malformed_reward), logs
    logs["cerm_score"] = own
    parsed = [c for c in counterparts if c is not None]
    logs["cerm_counterparts_parsed"] = float(len(parsed))
    if not parsed:
        return float(cfg.no_counterpart_reward), logs
    wins = ties = 0
    for c in parsed:
        if own == c:
            ties += 1
        elif (own > c) == (side == "chosen"):
            wins += 1
    logs["cerm_correct"] = wins / len(parsed)
    logs["cerm_tie"] = ties / len(parsed)
    return (wins + ties * float(cfg.tie_reward)) / len(parsed), logs


def malformed_criteria(cfg: CermAgentConfig, side: str) -> tuple[float, dict[str, float]]:
    logs = dict.fromkeys(LOG_KEYS, 0.0)
    logs["cerm_malformed_criteria"] = 1.0
    logs["cerm_side_chosen"] = float(side == "chosen")
    return float(cfg.malformed_reward), logs


__all__ = [
    "LOG_KEYS",
    "SIDES",
    "CermAgentConfig",
    "LabelError",
    "PairLabel",
    "criteria_ok",
    "eval_turn_text",
    "malformed_criteria",
    "next_turn_feedback",
    "pair_reward",
    "parse_label",
    "strip_special",
]
