"""`length`: the response-length baseline (no model, no requirements).

"Better than length?" is the first question to ask of any reward model on real data: a
scorer that only prefers longer answers already orders many requirement-dropout groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from openrlhf_reward.config import build_config
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult
from openrlhf_reward.text import count_words


@dataclass
class LengthConfig:
    unit: str = field(default="words", metadata={"help": "what to count: words | chars"})


class LengthScorer(Scorer):
    """Reward = the response's length in ``unit`` (words as counted by the checks)."""

    name = "length"
    config_class = LengthConfig

    def __init__(self, **kwargs) -> None:
        self.config: LengthConfig = build_config(LengthConfig, kwargs, "length")
        if self.config.unit not in ("words", "chars"):
            raise ValueError(f"length: unit must be 'words' or 'chars', got {self.config.unit!r}")

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        count = count_words if self.config.unit == "words" else len
        return [ScoreResult(reward=float(count(r.response))) for r in batch]
