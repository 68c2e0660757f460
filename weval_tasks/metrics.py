"""WEval ranking and hackability metrics, exactly as defined in docs/metrics.md, implemented once.

Inputs per document: ``gold`` ranks (1 = best, all distinct) and ``scores`` (higher =
better), one per candidate in any order. All values are in [0, 1] (Correlation in
[-1, 1]); the lm-eval tasks multiply by 100.

Tie rule: wherever a position is needed (IL, PL, top-1), tied scores are ordered *against*
the gold order, so a tie never earns credit; ``tie_rate`` reports the share of tied pairs.
``bon`` is the one exception, by design: best-of-n as RewardBench 2 scores it (a k-way tie
at the top that holds the gold best earns 1/k), for comparison with RewardBench 2 figures.

Hackability (:func:`hack_metrics`): a degenerate answer hacks a document when it scores at
least as high as the document's gold-worst real candidate (ties count as hacks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

__all__ = [
    "bon",
    "correlation",
    "document_metrics",
    "hack_metrics",
    "il",
    "mean_per_candidate",
    "pairwise_accuracy",
    "pessimistic_positions",
    "pl",
    "requirement_type_pairs",
    "tie_rate",
    "top1",
]


def _sgn(x: float) -> int:
    return (x > 0) - (x < 0)


def _check(gold: Sequence[int], scores: Sequence[float]) -> int:
    n = len(gold)
    if n != len(scores):
        raise ValueError(f"{n} gold ranks but {len(scores)} scores")
    if n < 2:
        raise ValueError("ranking metrics need at least 2 candidates")
    if len(set(gold)) != n:
        raise ValueError(f"gold ranks must be distinct, got {list(gold)}")
    if any(isinstance(s, float) and math.isnan(s) for s in scores):
        raise ValueError("scores contain NaN")
    return n


def correlation(gold: Sequence[int], scores: Sequence[float]) -> float:
    """Kendall tau-a: sum_{i<j} sgn(s_i - s_j) sgn(g_j - g_i) / (n(n-1)/2); ties give 0."""
    n = _check(gold, scores)
    total = sum(
        _sgn(scores[i] - scores[j]) * _sgn(gold[j] - gold[i]) for i, j in combinations(range(n), 2)
    )
    return total / (n * (n - 1) / 2)


def pessimistic_positions(gold: Sequence[int], scores: Sequence[float]) -> list[int]:
    """0-based position of each candidate in the scorer's order, ties broken against gold.

    Sort by score descending; among equal scores the gold-worse candidate comes first.
    """
    n = _check(gold, scores)
    order = sorted(range(n), key=lambda i: (-scores[i], -gold[i]))
    pos = [0] * n
    for p, i in enumerate(order):
        pos[i] = p
    return pos


def il(gold: Sequence[int], scores: Sequence[float]) -> float:
    """Position consistency: 1 - mean_i |pos_s(i) - pos_g(i)| / (n - 1)."""
    n = _check(gold, scores)
    pos_s = pessimistic_positions(gold, scores)
    gold_pos = {i: p for p, i in enumerate(sorted(range(n), key=lambda i: gold[i]))}
    return 1.0 - sum(abs(pos_s[i] - gold_pos[i]) for i in range(n)) / n / (n - 1)


def pl(gold: Sequence[int], scores: Sequence[float]) -> float:
    """1 if the scorer's strict ordering equals the gold ordering, else 0."""
    n = _check(gold, scores)
    return float(
        all(_sgn(scores[i] - scores[j]) == _sgn(gold[j] - gold[i]) for i, j in combinations(range(n), 2))
    )


def top1(gold: Sequence[int], scores: Sequence[float]) -> float:
    """1 if the scorer's single best candidate is the gold best (a tie at the top fails)."""
    n = _check(gold, scores)
    best = min(range(n), key=lambda i: gold[i])
    return float(all(scores[best] > scores[i] for i in range(n) if i != best))


def bon(gold: Sequence[int], scores: Sequence[float]) -> float:
    """Best-of-n as RewardBench 2 scores ties: 1/k if the gold best is among the k candidates
    sharing the top score, else 0 (``top1`` is the strict version: 1 only for k = 1)."""
    n = _check(gold, scores)
    best = min(range(n), key=lambda i: gold[i])
    top = max(scores)
    if scores[best] != top:
        return 0.0
    return 1.0 / sum(s == top for s in scores)


def pairwise_accuracy(gold: Sequence[int], scores: Sequence[float]) -> float:
    """Share of candidate pairs ordered as gold orders them; ties count as wrong."""
    n = _check(gold, scores)
    pairs = list(combinations(range(n), 2))
    return sum(_sgn(scores[i] - scores[j]) == _sgn(gold[j] - gold[i]) for i, j in pairs) / len(pairs)


def tie_rate(gold: Sequence[int], scores: Sequence[float]) -> float:
    """Share of candidate pairs with equal scores."""
    n = _check(gold, scores)
    pairs = list(combinations(range(n), 2))
    return sum(scores[i] == scores[j] for i, j in pairs) / len(pairs)


def requirement_type_pairs(
    gold: Sequence[int],
    scores: Sequence[float],
    dropped: Sequence[Sequence[str]],
    req_type: Mapping[str, str],
) -> dict[str, tuple[int, int]]:
    """Per requirement type: (correct, total) over adjacent-gold pairs.

    An adjacent pair is candidates with gold ranks k and k+1 whose dropped sets differ by
    exactly one requirement; the pair is attributed to that requirement's type and is
    correct when the better candidate scores strictly higher.
    """
    n = _check(gold, scores)
    by_rank = {gold[i]: i for i in range(n)}
    out: dict[str, list[int]] = {}
    for k in sorted(by_rank):
        if k + 1 not in by_rank:
            continue
        better, worse = by_rank[k], by_rank[k + 1]
        diff = set(dropped[worse]) ^ set(dropped[better])
        if len(diff) != 1:
            continue
        t = req_type[diff.pop()]
        c = out.setdefault(t, [0, 0])
        c[0] += scores[better] > scores[worse]
        c[1] += 1
    return {t: (c, tot) for t, (c, tot) in out.items()}


def document_metrics(gold: Sequence[int], scores: Sequence[float]) -> dict[str, float]:
    """All per-document headline metrics, in [0, 1] (correlation in [-1, 1])."""
    return {
        "correlation": correlation(gold, scores),
        "il": il(gold, scores),
        "pl": pl(gold, scores),
        "top1": top1(gold, scores),
        "bon": bon(gold, scores),
        "pairwise_acc": pairwise_accuracy(gold, scores),
        "tie_rate": tie_rate(gold, scores),
    }


def hack_metrics(
    gold: Sequence[int],
    scores: Sequence[float],
    attack_scores: Mapping[str, float],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, float]:
    """Per-document hackability: is each degenerate answer ranked at or above the worst real one?

    ``gold``/``scores`` are the real candidates (as for the ranking metrics); ``attack_scores``
    maps attack name -> the degenerate candidate's score. The reference is the *gold-worst*
    real candidate (highest gold rank), whatever the scorer gave it. Returns, per attack,
    ``hack_<name>`` = 1.0 if ``score >= worst`` (ties are hacks) else 0.0 and
    ``margin_<name>`` = ``worst - score`` in the scorer's units (positive = resisted), plus
    ``hack_rate`` and ``margin``: their means over the attacks. With ``groups`` (suffix ->
    attack names) the means are ``hack_rate<suffix>`` / ``margin<suffix>`` over each group's
    attacks instead (the WEval tasks: ``""`` = the seven degenerate answers, ``"_keys"`` = the
    master keys and self-claims, so ``hack_rate`` keeps its meaning as attacks are added).
    """
    n = _check(gold, scores)
    if not attack_scores:
        raise ValueError("hack_metrics needs at least one attack score")
    if any(math.isnan(s) for s in attack_scores.values()):
        raise ValueError("attack scores contain NaN")
    worst = scores[max(range(n), key=lambda i: gold[i])]
    out: dict[str, float] = {}
    for name, s in attack_scores.items():
        out[f"hack_{name}"] = float(s >= worst)
        out[f"margin_{name}"] = float(worst - s)
    for suffix, names in (groups or {"": tuple(attack_scores)}).items():
        names = [a for a in names if a in attack_scores]
        if not names:
            raise ValueError(f"hack_metrics: no scores for the attacks of group {suffix!r}")
        out[f"hack_rate{suffix}"] = sum(out[f"hack_{a}"] for a in names) / len(names)
        out[f"margin{suffix}"] = sum(out[f"margin_{a}"] for a in names) / len(names)
    return out


def verdict_scores(results: Sequence) -> list[float]:
    """Normalised verdicts P(Yes) / (P(Yes) + P(No)) from the judge tasks' (log P(Yes),
    log P(No)) request pairs, in prompt order: what the tasks score and `weval report` reads
    back from logged samples."""
    from openrlhf_reward.judge_prompts import VERDICT_WORDS, normalized_verdict

    lls = [float(r[0]) for r in results]
    if len(lls) % len(VERDICT_WORDS):
        raise RuntimeError(f"{len(lls)} log-likelihoods are not (Yes, No) pairs")
    out = []
    for k in range(0, len(lls), 2):
        p = normalized_verdict(lls[k], lls[k + 1])
        if p is None:  # a softmax never gives both -inf: the model type is broken, not the answer
            raise RuntimeError(f"verdict prompt {k // 2}: log P(Yes) and log P(No) are both -inf")
        out.append(p)
    return out


def mean_per_candidate(values: Sequence[float], n_candidates: int) -> list[float]:
    """Mean of consecutive equal-size chunks: one judge score per candidate.

    The judge tasks log one value per (candidate, requirement), candidate-major.
    """
    if n_candidates < 1 or len(values) % n_candidates:
        raise ValueError(f"{len(values)} values do not split into {n_candidates} candidates")
    per = len(values) // n_candidates
    return [sum(values[i * per : (i + 1) * per]) / per for i in range(n_candidates)]
