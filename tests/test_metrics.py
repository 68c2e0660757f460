"""Ranking metrics: hand-worked examples, an independent computation, and properties."""

from __future__ import annotations

import itertools
import random

import pytest
from scipy.stats import kendalltau

from weval_tasks.metrics import (
    bon,
    correlation,
    document_metrics,
    hack_metrics,
    il,
    mean_per_candidate,
    pairwise_accuracy,
    pessimistic_positions,
    pl,
    requirement_type_pairs,
    tie_rate,
    top1,
)

GOLD = [1, 2, 3, 4, 5]


def test_hand_worked_one_swap():
    # Gold order A>B>C>D>E; the scorer swaps C and D.
    scores = [0.9, 0.8, 0.5, 0.6, 0.1]
    # 10 pairs, 9 concordant, 1 discordant -> tau-a = (9 - 1) / 10.
    assert correlation(GOLD, scores) == pytest.approx(0.8)
    assert pairwise_accuracy(GOLD, scores) == pytest.approx(0.9)
    # Positions: C at 3 (gold 2), D at 2 (gold 3): mean |diff| = 2/5, over n-1 = 4.
    assert il(GOLD, scores) == pytest.approx(1 - (2 / 5) / 4)
    assert pl(GOLD, scores) == 0.0
    assert top1(GOLD, scores) == 1.0
    assert tie_rate(GOLD, scores) == 0.0


def test_hand_worked_ties_are_pessimistic():
    # B and C tie: the pessimistic order puts C (gold-worse) before B.
    scores = [3.0, 2.0, 2.0, 1.0]
    gold = [1, 2, 3, 4]
    assert pessimistic_positions(gold, scores) == [0, 2, 1, 3]
    assert correlation(gold, scores) == pytest.approx(5 / 6)  # tie contributes 0
    assert pairwise_accuracy(gold, scores) == pytest.approx(5 / 6)  # tie is wrong
    assert il(gold, scores) == pytest.approx(1 - (2 / 4) / 3)
    assert pl(gold, scores) == 0.0
    assert tie_rate(gold, scores) == pytest.approx(1 / 6)


def test_top1_tie_at_the_top_fails():
    assert top1([1, 2, 3], [5.0, 5.0, 1.0]) == 0.0
    assert top1([1, 2, 3], [5.0, 4.0, 4.0]) == 1.0


def test_constant_scorer_gets_no_credit_from_ties():
    m = document_metrics(GOLD, [0.0] * 5)
    assert m["correlation"] == 0.0
    assert m["pl"] == 0.0 and m["top1"] == 0.0 and m["pairwise_acc"] == 0.0
    assert m["tie_rate"] == 1.0
    # Ties broken against gold = the reversed order, the worst IL possible for n=5.
    assert m["il"] == pytest.approx(il(GOLD, [1, 2, 3, 4, 5]))


def test_perfect_and_reversed():
    perfect = document_metrics(GOLD, [5, 4, 3, 2, 1])
    assert all(perfect[k] == 1.0 for k in ("correlation", "il", "pl", "top1", "pairwise_acc"))
    assert perfect["tie_rate"] == 0.0
    assert correlation(GOLD, [1, 2, 3, 4, 5]) == -1.0
    assert pairwise_accuracy(GOLD, [1, 2, 3, 4, 5]) == 0.0


@pytest.mark.parametrize("seed", range(30))
def test_agrees_with_scipy_kendall_tau_when_tie_free(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 9)
    gold = list(range(1, n + 1))
    rng.shuffle(gold)
    scores = rng.sample(range(1000), n)  # distinct: no ties, so tau-a == tau-b
    # Gold rank 1 is best, scores high are best: correlate scores with -gold.
    expected = kendalltau(scores, [-g for g in gold]).statistic
    assert correlation(gold, scores) == pytest.approx(expected)


def test_brute_force_il_and_pl_on_all_permutations_of_four():
    gold = [1, 2, 3, 4]
    for perm in itertools.permutations(range(4)):
        scores = [10 - p for p in perm]  # candidate i sits at position perm[i]
        expected_il = 1 - sum(abs(perm[i] - i) for i in range(4)) / 4 / 3
        assert il(gold, scores) == pytest.approx(expected_il)
        assert pl(gold, scores) == float(perm == (0, 1, 2, 3))
        assert top1(gold, scores) == float(perm[0] == 0)


def test_bon_scores_a_k_way_tie_at_the_top_as_one_over_k():
    # RewardBench 2's best-of-n with ties: the gold best among k tied top scores earns 1/k
    assert bon([1, 2, 3], [5.0, 4.0, 1.0]) == 1.0
    assert bon([1, 2, 3], [5.0, 5.0, 1.0]) == 0.5
    assert bon([1, 2, 3, 4], [2.0, 2.0, 2.0, 1.0]) == pytest.approx(1 / 3)
    assert bon([1, 2, 3, 4], [0.0, 0.0, 0.0, 0.0]) == 0.25  # a constant scorer: 1/n, top1 gives it 0
    assert bon([1, 2, 3], [4.0, 5.0, 5.0]) == 0.0  # the best is not at the top at all
    assert bon([1, 2, 3], [4.0, 5.0, 1.0]) == 0.0
    # bon equals top1 whenever the top is not tied, and is never below it
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(2, 6)
        gold = rng.sample(range(1, n + 1), n)
        scores = [float(rng.randint(0, 3)) for _ in range(n)]
        k = scores.count(max(scores))
        assert bon(gold, scores) >= top1(gold, scores)
        if k == 1:
            assert bon(gold, scores) == top1(gold, scores)
        else:
            best = gold.index(1)
            assert bon(gold, scores) == (1 / k if scores[best] == max(scores) else 0.0)
    assert document_metrics([1, 2], [1.0, 1.0])["bon"] == 0.5


@pytest.mark.parametrize("seed", range(10))
def test_shuffling_candidates_changes_nothing(seed):
    rng = random.Random(seed)
    gold = [1, 2, 3, 4, 5]
    scores = [rng.choice([0.0, 0.5, 1.0, 2.0]) for _ in gold]  # ties likely
    base = document_metrics(gold, scores)
    idx = list(range(5))
    for _ in range(5):
        rng.shuffle(idx)
        assert document_metrics([gold[i] for i in idx], [scores[i] for i in idx]) == base


def test_requirement_type_pairs_attribute_adjacent_drops():
    gold = [1, 2, 3]
    dropped = [[], ["c2"], ["c2", "c1"]]
    types = {"c1": "length", "c2": "style"}
    # rank1 > rank2 correct (style), rank2 < rank3 wrong (length).
    assert requirement_type_pairs(gold, [3.0, 2.0, 2.5], dropped, types) == {
        "style": (1, 1),
        "length": (0, 1),
    }
    # A tie is wrong.
    assert requirement_type_pairs(gold, [1.0, 1.0, 0.0], dropped, types)["style"] == (0, 1)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="distinct"):
        correlation([1, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match="2 gold ranks but 3 scores"):
        il([1, 2], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        pl([1, 2], [float("nan"), 1.0])


# ---- hackability ------------------------------------------------------------------------


def test_hack_metrics_hand_worked():
    # Gold-worst real candidate (rank 3) scores 0.2, whatever the best-scored one is.
    gold, real = [1, 2, 3], [0.9, 0.1, 0.2]
    m = hack_metrics(gold, real, {"a": 0.5, "b": 0.2, "c": 0.0})
    assert m["hack_a"] == 1.0 and m["margin_a"] == pytest.approx(-0.3)
    assert m["hack_b"] == 1.0 and m["margin_b"] == 0.0  # a tie is a hack
    assert m["hack_c"] == 0.0 and m["margin_c"] == pytest.approx(0.2)
    assert m["hack_rate"] == pytest.approx(2 / 3)
    assert m["margin"] == pytest.approx((-0.3 + 0.0 + 0.2) / 3)


def test_hack_metrics_rate_groups():
    gold, real = [1, 2, 3], [0.9, 0.1, 0.2]
    m = hack_metrics(gold, real, {"a": 0.5, "b": 0.2, "c": 0.0}, {"": ("a", "c"), "_x": ("b",)})
    assert m["hack_rate"] == 0.5 and m["hack_rate_x"] == 1.0
    assert m["margin"] == pytest.approx((-0.3 + 0.2) / 2) and m["margin_x"] == 0.0
    assert m["hack_b"] == 1.0  # per-attack values do not depend on the groups
    with pytest.raises(ValueError, match="no scores for the attacks of group '_y'"):
        hack_metrics(gold, real, {"a": 0.5}, {"": ("a",), "_y": ("z",)})


def test_hack_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="at least one attack"):
        hack_metrics([1, 2], [1.0, 0.0], {})
    with pytest.raises(ValueError, match="NaN"):
        hack_metrics([1, 2], [1.0, 0.0], {"a": float("nan")})
    with pytest.raises(ValueError, match="2 gold ranks but 1 scores"):
        hack_metrics([1, 2], [1.0], {"a": 0.0})


def _score_docs(scorer):
    """Per demo document: (gold, real scores, attack scores) under a hand-made scorer."""
    from openrlhf_reward.schema import load_weval_jsonl
    from weval_tasks import DEMO_DATA
    from weval_tasks.attacks import build_attacks

    for doc in load_weval_jsonl(DEMO_DATA):
        gold = [c.gold_rank for c in doc.candidates]
        real = [scorer(c.response) for c in doc.candidates]
        yield gold, real, {a: scorer(t) for a, t in build_attacks(doc).items()}


def test_a_scorer_preferring_longer_text_is_hacked_by_dots():
    results = [hack_metrics(g, r, a) for g, r, a in _score_docs(lambda text: float(len(text)))]
    assert all(m["hack_dots"] == 1.0 for m in results)
    assert all(m["margin_dots"] < 0 for m in results)
    # ... but not by the empty answer, which is shorter than any real one
    assert all(m["hack_empty"] == 0.0 and m["margin_empty"] > 0 for m in results)


def test_a_scorer_giving_empty_answers_zero_is_not_hacked_by_empty():
    # Real answers all score >= 0.5 under this scorer; a blank one scores 0.
    def scorer(text: str) -> float:
        return 0.0 if not text.strip() else 0.5 + 0.5 * min(1.0, len(text.split()) / 200)

    results = [hack_metrics(g, r, a) for g, r, a in _score_docs(scorer)]
    assert all(m["hack_empty"] == 0.0 and m["hack_whitespace"] == 0.0 for m in results)
    assert sum(m["hack_dots"] for m in results) > 0  # it is still a length scorer


def test_mean_per_candidate():
    assert mean_per_candidate([1.0, 3.0, 2.0, 2.0, 0.0, 6.0], 3) == [2.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="5 values do not split into 2 candidates"):
        mean_per_candidate([1.0] * 5, 2)
