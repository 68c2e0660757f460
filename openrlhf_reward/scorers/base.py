"""The one interface every reward backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openrlhf_reward.schema import REQUIREMENT_TYPES, Requirement
from openrlhf_reward.text import is_blank


@dataclass(frozen=True)
class ScoreRequest:
    """One (instruction, response) to score, with the instruction's requirements."""

    prompt: str
    response: str
    requirements: Sequence[Requirement] = ()
    # The base query without requirement texts, when known (criteria caching keys on it).
    query: str | None = None
    # Whether a reader sees nothing in the response (is_blank), computed once when the request
    # is made: the scorers, extra_logs and the server's /metrics all read this.
    blank: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blank", is_blank(self.response))


@dataclass
class ScoreResult:
    """A reward plus per-requirement detail.

    ``requirement_scores`` maps requirement id -> adherence in [0, 1], or None when this
    backend cannot score that requirement (it then does not count toward ``reward``).
    """

    reward: float
    requirement_scores: dict[str, float | None] = field(default_factory=dict)
    requirement_types: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def type_adherence(self) -> dict[str, float]:
        """Mean adherence per requirement type over the scorable requirements."""
        out: dict[str, float] = {}
        for t in REQUIREMENT_TYPES:
            vals = [
                s
                for rid, s in self.requirement_scores.items()
                if s is not None and self.requirement_types.get(rid) == t
            ]
            if vals:
                out[t] = sum(vals) / len(vals)
        return out


class Scorer(ABC):
    """A reward backend. ``score`` takes a batch and returns one result per request."""

    name: ClassVar[str] = ""
    #: Whether labels must carry requirements (False for holistic backends such as ``bt``);
    #: the server refuses labels without them unless its ``require_requirements`` says otherwise.
    needs_requirements: ClassVar[bool] = True

    @abstractmethod
    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (model memory, HTTP clients)."""
