"""Seeded nested requirement dropout.

For an instruction with requirements ``c1..cn``, one random order of the requirement ids is
drawn from ``random.Random(f"{seed}:{doc_id}")``; level ``k`` drops the first ``k`` ids of
that order. Levels are therefore nested (level k's dropped set contains level k-1's), the
draw depends only on (seed, document id), and each level's prompt is rebuilt from the
query and the kept requirements only (:func:`openrlhf_reward.schema.build_prompt`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from openrlhf_reward.schema import Requirement, build_prompt

__all__ = ["DropoutLevel", "dropout_levels", "shuffled_order"]


@dataclass(frozen=True)
class DropoutLevel:
    k: int  # number of dropped requirements; gold rank = k + 1
    dropped: tuple[str, ...]  # in drop order
    kept: tuple[Requirement, ...]  # in the original order
    prompt: str


def dropout_levels(
    query: str,
    requirements: Sequence[Requirement],
    *,
    seed: int,
    doc_id: str,
    max_dropped: int | None = None,
) -> list[DropoutLevel]:
    """Levels ``k = 0..max_dropped`` (default ``n - 1``: the weakest level keeps one requirement).

    ``max_dropped`` may be ``n`` (the weakest prompt is the bare query); it is capped there.
    """
    n = len(requirements)
    if n == 0:
        raise ValueError(f"document {doc_id!r}: no requirements to drop")
    top = n - 1 if max_dropped is None else min(max_dropped, n)
    if top < 1:
        raise ValueError(f"document {doc_id!r}: max_dropped must allow at least one dropped requirement")
    order = [r.id for r in requirements]
    random.Random(f"{seed}:{doc_id}").shuffle(order)
    levels = []
    for k in range(top + 1):
        dropped = tuple(order[:k])
        kept = tuple(r for r in requirements if r.id not in dropped)
        levels.append(DropoutLevel(k=k, dropped=dropped, kept=kept, prompt=build_prompt(query, kept)))
    return levels


def shuffled_order(n: int, *, seed: int, doc_id: str) -> list[int]:
    """A seeded permutation of ``range(n)`` for the candidate order written to the file."""
    idx = list(range(n))
    random.Random(f"{seed}:{doc_id}:candidates").shuffle(idx)
    return idx
