"""`rules`: deterministic checkers for requirements that carry a `check` spec (CPU, no weights).

Every kind of :mod:`openrlhf_reward.checks` is supported, including ``ifeval`` (IFEval-format
labels scored with lm-eval's own checkers, see :mod:`openrlhf_reward.ifeval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from openrlhf_reward.checks import run_check
from openrlhf_reward.config import build_config
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult


@dataclass
class RulesConfig:
    unscorable_reward: float = field(
        default=0.0,
        metadata={"help": "reward when no requirement of a sample has a scorable check spec"},
    )


class RulesScorer(Scorer):
    """Reward = share of the scorable requirements that pass.

    A requirement without a check spec (or an ``ifeval`` check that cannot be decided
    deterministically) is reported as not scorable (None) and does not count. With no
    scorable requirement at all the reward is ``unscorable_reward`` and
    ``info["n_scorable"]`` is 0, so callers can tell.

    A blank response (:func:`~openrlhf_reward.text.is_blank`: nothing visible once think
    blocks and end markers are stripped) fails every check and gets reward 0 whatever the requirements:
    ``info["blank"]`` is True and ``info["reason"]`` is ``"blank response"``. See
    ``docs/checks.md``.
    """

    name = "rules"
    config_class = RulesConfig

    def __init__(self, **kwargs) -> None:
        self.config: RulesConfig = build_config(RulesConfig, kwargs, "rules")
        self.unscorable_reward = float(self.config.unscorable_reward)

    def score_one(self, req: ScoreRequest) -> ScoreResult:
        if req.blank:
            # Nothing was answered: every check fails (a negative check such as "no commas"
            # must not reward silence), and with no checks at all there is still no reward.
            scores = {r.id: None if r.check is None else 0.0 for r in req.requirements}
            return ScoreResult(
                reward=0.0,
                requirement_scores=scores,
                requirement_types={r.id: r.type for r in req.requirements},
                info={"n_scorable": sum(v is not None for v in scores.values()),
                      "blank": True, "reason": "blank response"},
            )
        scores: dict[str, float | None] = {}
        for r in req.requirements:
            ok = None if r.check is None else run_check(req.response, r.check)
            scores[r.id] = None if ok is None else float(ok)
        vals = [v for v in scores.values() if v is not None]
        reward = sum(vals) / len(vals) if vals else self.unscorable_reward
        return ScoreResult(
            reward=reward,
            requirement_scores=scores,
            requirement_types={r.id: r.type for r in req.requirements},
            info={"n_scorable": len(vals), "blank": False},
        )

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return [self.score_one(r) for r in batch]
