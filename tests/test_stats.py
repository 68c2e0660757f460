"""Bootstrap CIs (weval_tasks.stats) against an independent computation: scipy.stats.bootstrap
(percentile method, same number of resamples, its own random draws), plus the properties the
report relies on (seeded, document-level resampling, pooled ratios, paired differences)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from weval_tasks.stats import bootstrap, paired_bootstrap, resample_counts

# per-document values of the shape the report resamples: 25 documents (the demo set's size),
# a correlation-like metric in [-100, 100] and a 0/100 metric such as top1
RNG = np.random.default_rng(7)
CORR = RNG.uniform(-100, 100, 25).round(1)
TOP1 = 100.0 * (RNG.random(25) < 0.6)
N = 4000  # enough that two independent Monte Carlo runs agree to a fraction of the CI width


def _scipy_ci(*samples, statistic, paired=False) -> tuple[float, float]:
    res = stats.bootstrap(samples, statistic, n_resamples=N, method="percentile", paired=paired,
                          vectorized=True, random_state=np.random.default_rng(123))
    return res.confidence_interval.low, res.confidence_interval.high


@pytest.mark.parametrize("values", [CORR, TOP1], ids=["correlation", "top1"])
def test_mean_ci_matches_scipy(values):
    lo, hi = bootstrap({"m": values}, n_resamples=N, seed=0)["m"]
    s_lo, s_hi = _scipy_ci(values, statistic=lambda x, axis: np.mean(x, axis=axis))
    se = values.std(ddof=1) / np.sqrt(len(values))
    # two independent Monte Carlo estimates of the same percentiles: within 0.15 standard errors
    assert lo == pytest.approx(s_lo, abs=0.15 * se) and hi == pytest.approx(s_hi, abs=0.15 * se)
    assert lo < values.mean() < hi
    # and the interval has the width the normal approximation predicts (+-1.96 SE), roughly
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_paired_difference_matches_scipy():
    a = CORR
    b = CORR - 20 + RNG.normal(0, 15, 25)  # B correlated with A: pairing narrows the interval
    out = paired_bootstrap({"m": a}, {"m": b}, n_resamples=N, seed=0)["m"]
    assert out["diff"] == pytest.approx(a.mean() - b.mean())
    s_lo, s_hi = _scipy_ci(a, b, statistic=lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                           paired=True)
    se = (a - b).std(ddof=1) / np.sqrt(len(a))
    assert out["ci95"][0] == pytest.approx(s_lo, abs=0.15 * se)
    assert out["ci95"][1] == pytest.approx(s_hi, abs=0.15 * se)
    unpaired = np.sqrt(a.var(ddof=1) / 25 + b.var(ddof=1) / 25)
    assert out["ci95"][1] - out["ci95"][0] < 2 * 1.96 * unpaired


def test_pooled_ratio_ci_matches_scipy():
    correct = RNG.integers(0, 4, 25)
    total = correct + RNG.integers(0, 3, 25)
    total[0] = 0  # a document without pairs of this type still counts as a document
    lo, hi = bootstrap({}, {"acc": (correct, total)}, n_resamples=N, seed=0)["acc"]

    def pooled(c, t, axis):
        return 100.0 * c.sum(axis=axis) / t.sum(axis=axis)

    s_lo, s_hi = _scipy_ci(correct, total, statistic=pooled, paired=True)
    assert lo == pytest.approx(s_lo, abs=2.0) and hi == pytest.approx(s_hi, abs=2.0)
    assert lo < 100.0 * correct.sum() / total.sum() < hi


def test_seeded_and_resampling_documents():
    a = bootstrap({"m": CORR}, n_resamples=200, seed=3)
    assert a == bootstrap({"m": CORR}, n_resamples=200, seed=3)
    assert a != bootstrap({"m": CORR}, n_resamples=200, seed=4)
    counts = resample_counts(25, 200, seed=3)
    assert counts.shape == (200, 25) and (counts.sum(axis=1) == 25).all()
    # a constant metric has a zero-width interval; one document gives its own value
    assert bootstrap({"m": [50.0] * 25}, n_resamples=50)["m"] == [50.0, 50.0]
    assert bootstrap({"m": [12.5]}, n_resamples=50)["m"] == [12.5, 12.5]


def test_paired_runs_that_agree_have_a_zero_difference():
    out = paired_bootstrap({"m": CORR}, {"m": CORR}, n_resamples=100)["m"]
    assert out == {"diff": 0.0, "ci95": [0.0, 0.0]}


def _length_row(drop: int = 0) -> dict:
    """A report row scored by word count from the demo documents (no lm-eval run)."""
    from openrlhf_reward.schema import load_weval_jsonl
    from weval_tasks import DEMO_DATA
    from weval_tasks.report import baseline_scores, summarise

    docs = load_weval_jsonl(DEMO_DATA)[drop:]
    items = [(f"wevaladv-{d.category}", d, *baseline_scores("length", "wevaladv", d)) for d in docs]
    s = summarise("wevaladv", items)
    return {"family": "wevaladv", "tasks": s["tasks"], "per_type": s["per_type"], "per_doc": s["per_doc"],
            "docs": [(t, d) for t, d, _, _ in items]}


def test_report_cis_and_compare_on_rows():
    from openrlhf_reward.schema import DataError
    from weval_tasks.report import add_cis, compare

    row = _length_row()
    add_cis([row], n_resamples=300, seed=0)
    assert row["n_docs"]["wevaladv_all"] == 25 and sum(
        n for t, n in row["n_docs"].items() if t != "wevaladv_all") == 25
    for task, cis in row["ci"].items():
        assert set(cis) == set(row["tasks"][task])
    lo, hi = row["ci"]["wevaladv_all"]["correlation"]
    assert lo < row["tasks"]["wevaladv_all"]["correlation"] < hi
    assert set(row["per_type_ci"]) == set(row["per_type"])
    # a scorer against itself: no difference; against fewer documents: refused, naming them
    same = compare(row, _length_row(), n_resamples=100)
    assert same["n_docs"] == 25 and all(m["diff"] == 0.0 for m in same["metrics"].values())
    assert {m["verdict"] for m in same["metrics"].values()} == {"no detectable difference at this size"}
    with pytest.raises(DataError, match=r"2 only in A \[demo-\w+-\d+ \(wevaladv-\w+\), demo-.*0 only in B"):
        compare(row, _length_row(drop=2), n_resamples=100)
