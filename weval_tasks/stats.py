"""Bootstrap confidence intervals over documents for `weval report` (numpy only).

A run's metrics are means over documents (or, for the per-requirement-type accuracies,
ratios of pair counts pooled over documents), so the unit to resample is the document:
each resample draws ``n`` documents with replacement from the run's ``n``, recomputes every
metric and the 95 % interval is the 2.5th-97.5th percentile of the resampled values
(percentile bootstrap, seeded). :func:`paired_bootstrap` does the same for the per-document
difference of two runs scored on the same documents (the same draw for both runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
CONFIDENCE = 0.95

__all__ = ["CONFIDENCE", "DEFAULT_RESAMPLES", "DEFAULT_SEED", "bootstrap", "paired_bootstrap", "resample_counts"]


def resample_counts(n: int, n_resamples: int, seed: int) -> Any:
    """(n_resamples, n) matrix: how often each document is drawn in each resample.

    The draws are ``numpy.random.default_rng(seed).integers(0, n, (n_resamples, n))``; a
    count matrix lets every metric be a matrix product instead of a (resamples x docs x
    metrics) array, which would not fit in memory for the 506 paper groups.
    """
    import numpy as np

    if n < 1:
        raise ValueError("bootstrap needs at least one document")
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n), idx.ravel()), 1.0)
    return counts


def _interval(samples: Any) -> list[float] | None:
    import numpy as np

    alpha = (1.0 - CONFIDENCE) / 2
    if np.all(np.isnan(samples)):
        return None
    lo, hi = np.nanpercentile(samples, [100 * alpha, 100 * (1 - alpha)])
    return [float(lo), float(hi)]


def _stat_samples(counts: Any, per_doc: Mapping[str, Sequence[float]],
                  ratios: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> dict[str, Any]:
    """Resampled values: means of ``per_doc`` columns, pooled ratios sum(num) / sum(den)."""
    import numpy as np

    n = counts.shape[1]
    out: dict[str, Any] = {}
    for k, v in per_doc.items():
        out[k] = counts @ np.asarray(v, dtype=float) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, (num, den) in ratios.items():
            d = counts @ np.asarray(den, dtype=float)
            # a resample with no pair of this type has no accuracy: NaN, left out of the percentile
            out[k] = np.where(d > 0, 100.0 * (counts @ np.asarray(num, dtype=float)) / np.where(d > 0, d, 1), np.nan)
    return out


def bootstrap(
    per_doc: Mapping[str, Sequence[float]],
    ratios: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, list[float] | None]:
    """95 % percentile-bootstrap interval of each metric, resampling documents.

    ``per_doc``: metric -> one value per document (the metric is their mean);
    ``ratios``: metric -> (numerator, denominator) per document (the metric is
    100 * sum(num) / sum(den), e.g. the pooled per-type accuracy). All sequences have one
    entry per document, in the same order.
    """
    ratios = ratios or {}
    n = len(next(iter(per_doc.values()))) if per_doc else len(next(iter(ratios.values()))[0])
    counts = resample_counts(n, n_resamples, seed)
    return {k: _interval(v) for k, v in _stat_samples(counts, per_doc, ratios).items()}


def paired_bootstrap(
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    ratios_a: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ratios_b: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of A - B over documents both runs scored (same order in ``a`` and ``b``).

    Each resample draws the same documents for both runs, so document difficulty cancels.
    Returns metric -> {"diff": A - B on all documents, "ci95": [lo, hi]}.
    """
    import numpy as np

    ratios_a, ratios_b = ratios_a or {}, ratios_b or {}
    keys = [k for k in a if k in b]
    rkeys = [k for k in ratios_a if k in ratios_b]
    n = len(a[keys[0]]) if keys else len(ratios_a[rkeys[0]][0])
    counts = resample_counts(n, n_resamples, seed)
    full = np.ones((1, n))
    sa = _stat_samples(counts, {k: a[k] for k in keys}, {k: ratios_a[k] for k in rkeys})
    sb = _stat_samples(counts, {k: b[k] for k in keys}, {k: ratios_b[k] for k in rkeys})
    pa = _stat_samples(full, {k: a[k] for k in keys}, {k: ratios_a[k] for k in rkeys})
    pb = _stat_samples(full, {k: b[k] for k in keys}, {k: ratios_b[k] for k in rkeys})
    out = {}
    for k in [*keys, *rkeys]:
        diff = float(pa[k][0] - pb[k][0])
        out[k] = {"diff": None if np.isnan(diff) else diff, "ci95": _interval(sa[k] - sb[k])}
    return out
