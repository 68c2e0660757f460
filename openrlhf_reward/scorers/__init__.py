"""Reward backends, registered by name in one registry and chosen by a string.

>>> from openrlhf_reward.scorers import get_scorer
>>> scorer = get_scorer("rules")

Backends that need torch or an HTTP client import it when constructed, not when this
module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openrlhf_reward.registry import Registry
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult

# name -> "module:Class"; resolved lazily so `import openrlhf_reward` stays cheap.
SCORERS: Registry[type[Scorer]] = Registry(
    "reward backend",
    {
        "rules": "openrlhf_reward.scorers.rules:RulesScorer",
        "judge": "openrlhf_reward.scorers.judge:JudgeScorer",
        "ensemble": "openrlhf_reward.scorers.ensemble:EnsembleScorer",
        "bt": "openrlhf_reward.scorers.bt:BTScorer",
        "per-requirement": "openrlhf_reward.scorers.per_requirement:PerRequirementScorer",
        "classifier": "openrlhf_reward.scorers.classifier:ClassifierScorer",
        "remote": "openrlhf_reward.scorers.remote:RemoteScorer",
        "length": "openrlhf_reward.scorers.length:LengthScorer",
    },
)


def register_scorer(name: str) -> Callable[[type[Scorer]], type[Scorer]]:
    """Class decorator that registers a backend under ``name`` (for third-party backends)."""
    return SCORERS.register(name)


def unregister_scorer(name: str) -> None:
    """Remove the backend registered as ``name`` (e.g. a test double)."""
    SCORERS.unregister(name)


def available_scorers() -> list[str]:
    return SCORERS.available()


def scorer_class(name: str) -> type[Scorer]:
    return SCORERS.cls(name)


def get_scorer(name: str, **config: Any) -> Scorer:
    """Build the backend ``name`` with its config fields as keyword arguments."""
    return SCORERS.get(name, **config)


__all__ = [
    "SCORERS",
    "ScoreRequest",
    "ScoreResult",
    "Scorer",
    "available_scorers",
    "get_scorer",
    "register_scorer",
    "scorer_class",
    "unregister_scorer",
]
