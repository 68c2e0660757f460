"""The held-out figure's statistics (benchmarks/train_classifier_paper.py): WEval metrics per
document and percentile bootstrap CIs over documents. Fast: no model."""

from __future__ import annotations

from pathlib import Path

from benchmarks.train_classifier_paper import paired_diff, per_document, summarise
from openrlhf_reward.schema import load_weval_jsonl

DEMO = Path(__file__).resolve().parents[1] / "weval_tasks" / "data" / "weval_demo.jsonl"


def test_perfect_and_reversed_scorers_with_bootstrap_cis():
    docs = load_weval_jsonl(DEMO)
    perfect = per_document(docs, [[-c.gold_rank for c in d.candidates] for d in docs])
    reverse = per_document(docs, [[float(c.gold_rank) for c in d.candidates] for d in docs])
    s = summarise(perfect, n_boot=300, seed=0)
    assert s["correlation"] == {"mean": 100.0, "lo": 100.0, "hi": 100.0}  # constant: the CI collapses
    assert s["pl"]["mean"] == 100.0 and s["pairwise_acc"]["mean"] == 100.0
    assert all(s[f"type_{t}"]["mean"] == 100.0 for t in ("length", "format", "style", "content") if f"type_{t}" in s)
    assert summarise(reverse, 300, 0)["correlation"]["mean"] == -100.0
    d = paired_diff(perfect, reverse, "correlation", 300, 0)
    assert d == {"mean": 200.0, "lo": 200.0, "hi": 200.0}


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    docs = load_weval_jsonl(DEMO)
    # words as the score: the length baseline, which varies across documents
    rows = per_document(docs, [[float(len(c.response.split())) for c in d.candidates] for d in docs])
    a, b = summarise(rows, 500, seed=1), summarise(rows, 500, seed=1)
    assert a == b
    for k in ("correlation", "il", "pairwise_acc"):
        assert a[k]["lo"] < a[k]["mean"] < a[k]["hi"], (k, a[k])
    assert summarise(rows, 500, seed=2)["correlation"] != a["correlation"]
