"""Confidence intervals and paired significance tests.

Classification runs resample label codes (:func:`bootstrap_ci`, :func:`mcnemar`,
:func:`paired_bootstrap`). Scores of other tasks are per-example columns whose
column means determine the metric: one column of scores for a mean (token F1,
similarity, a judge's grade) or tp/fp/fn counts for a micro F1; those resample
examples through :func:`bootstrap_stat_ci` and :func:`paired_bootstrap_stat`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from adaptlab.evaluation.metrics import (
    FloatArray,
    IntArray,
    _check_codes,
    _macro_f1_from_counts,
    accuracy_codes,
    macro_f1_codes,
)

METRICS = ("accuracy", "macro_f1")

# Cap on resamples x examples held in memory at once (int64 index matrix plus gathers).
_MAX_CELLS = 2_000_000

# Below this many discordant pairs the chi-square approximation is poor, so use the exact test.
_EXACT_BELOW = 25


@dataclass(frozen=True)
class Interval:
    """Point estimate with a confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedTest:
    """Result of comparing two systems on the same examples; diff = accuracy_a - accuracy_b."""

    name: str
    statistic: float
    p_value: float
    a_only: int
    b_only: int
    diff: float


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _point(g: IntArray, p: IntArray, n_labels: int, metric: str) -> float:
    if metric == "accuracy":
        return accuracy_codes(g, p)
    return macro_f1_codes(g, p, n_labels)


def _index_blocks(n: int, resamples: int, seed: int) -> Iterator[IntArray]:
    """Yield bootstrap index matrices (rows = resamples) in memory-bounded blocks."""
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_CELLS // n)
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        yield rng.integers(0, n, size=(rows, n), dtype=np.int64)


def _per_row(gs: IntArray, ps: IntArray, n_labels: int, metric: str) -> FloatArray:
    """Metric for each row of resampled code matrices, without a loop over rows."""
    if metric == "accuracy":
        acc: FloatArray = np.mean(gs == ps, axis=1, dtype=np.float64)
        return acc
    rows = gs.shape[0]
    # Offsetting each row's codes by row * n_labels lets one bincount count all rows at once.
    offset = (np.arange(rows, dtype=np.int64) * n_labels)[:, None]
    size = rows * n_labels

    def count(codes: IntArray) -> FloatArray:
        return np.bincount(codes, minlength=size).reshape(rows, n_labels).astype(np.float64)

    hit = gs == ps
    parsed = ps >= 0
    tp = count((gs + offset)[hit])
    n_pred = count((ps + offset)[parsed])
    support = count((gs + offset).ravel())
    return _macro_f1_from_counts(tp, n_pred, support)


def _check_resampling(resamples: int) -> None:
    if resamples < 1:
        raise ValueError("resamples must be at least 1")


def bootstrap_ci(
    gold_codes: IntArray,
    pred_codes: IntArray,
    n_labels: int,
    *,
    metric: str = "accuracy",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval for accuracy or macro F1, resampling examples."""
    _check_metric(metric)
    _check_codes(gold_codes, pred_codes, n_labels)
    _check_resampling(resamples)
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    estimate = _point(gold_codes, pred_codes, n_labels, metric)
    stats = np.concatenate(
        [
            _per_row(gold_codes[idx], pred_codes[idx], n_labels, metric)
            for idx in _index_blocks(gold_codes.size, resamples, seed)
        ]
    )
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Bin(n, 0.5)."""
    # Exact integer sum; int / int true division rounds correctly without overflowing for any n.
    return sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)


BoolArray = npt.NDArray[np.bool_]


def _discordant(correct_a: BoolArray, correct_b: BoolArray) -> tuple[int, int, int]:
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError("correct_a and correct_b must be 1-D arrays of equal length")
    if a.size == 0:
        raise ValueError("cannot compare empty sets of predictions")
    return int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b)), int(a.size)


def mcnemar(correct_a: BoolArray, correct_b: BoolArray) -> PairedTest:
    """McNemar's test on per-example correctness; exact binomial when discordant pairs are few."""
    b, c, n = _discordant(correct_a, correct_b)
    diff = (b - c) / n
    m = b + c
    if m < _EXACT_BELOW:
        if m == 0:
            return PairedTest("mcnemar-exact", 0.0, 1.0, b, c, diff)
        k = min(b, c)
        p = min(1.0, 2.0 * _binom_half_cdf(k, m))
        return PairedTest("mcnemar-exact", float(k), p, b, c, diff)
    stat = (abs(b - c) - 1) ** 2 / m
    # Survival function of chi-square with one degree of freedom.
    p = math.erfc(math.sqrt(stat / 2.0))
    return PairedTest("mcnemar-chi2", stat, p, b, c, diff)


def paired_bootstrap(
    gold_codes: IntArray,
    pred_a: IntArray,
    pred_b: IntArray,
    n_labels: int,
    *,
    metric: str = "macro_f1",
    resamples: int = 1000,
    seed: int = 0,
) -> PairedTest:
    """Two-sided paired bootstrap test of metric(a) - metric(b); statistic is the observed gap."""
    _check_metric(metric)
    _check_codes(gold_codes, pred_a, n_labels)
    _check_codes(gold_codes, pred_b, n_labels)
    _check_resampling(resamples)
    observed = _point(gold_codes, pred_a, n_labels, metric) - _point(
        gold_codes, pred_b, n_labels, metric
    )
    diffs = np.concatenate(
        [
            _per_row(gold_codes[idx], pred_a[idx], n_labels, metric)
            - _per_row(gold_codes[idx], pred_b[idx], n_labels, metric)
            for idx in _index_blocks(gold_codes.size, resamples, seed)
        ]
    )
    share_le = float(np.mean(diffs <= 0.0))
    share_ge = float(np.mean(diffs >= 0.0))
    p = min(1.0, 2.0 * min(share_le, share_ge))
    b, c, n = _discordant(gold_codes == pred_a, gold_codes == pred_b)
    return PairedTest("paired-bootstrap", observed, p, b, c, (b - c) / n)


#: Maps column means (rows x columns) to one metric value per row.
Statistic = Callable[[FloatArray], FloatArray]


def mean_stat(means: FloatArray) -> FloatArray:
    """The metric of one column of per-example scores: its mean."""
    out: FloatArray = means[:, 0]
    return out


def micro_f1_stat(means: FloatArray) -> FloatArray:
    """Micro F1 from tp/fp/fn columns: 2tp / (2tp + fp + fn); 1.0 where all are zero."""
    tp, fp, fn = means[:, 0], means[:, 1], means[:, 2]
    den = 2.0 * tp + fp + fn
    out = np.ones_like(den)
    np.divide(2.0 * tp, den, out=out, where=den > 0)
    return out


def _columns(values: FloatArray) -> FloatArray:
    cols = np.asarray(values, dtype=np.float64)
    if cols.ndim == 1:
        cols = cols[:, None]
    if cols.ndim != 2 or cols.shape[0] == 0:
        raise ValueError("values must be a non-empty (examples x columns) array")
    return cols


def _resampled(cols: FloatArray, resamples: int, seed: int) -> Iterator[FloatArray]:
    """Column means of each bootstrap resample, in memory-bounded blocks."""
    n, k = cols.shape
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_CELLS // (n * k))
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int64)
        yield cols[idx].mean(axis=1)


def bootstrap_stat_ci(
    values: FloatArray,
    stat: Statistic = mean_stat,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``stat`` over per-example ``values`` (n or n x k)."""
    _check_resampling(resamples)
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    cols = _columns(values)
    estimate = float(stat(cols.mean(axis=0, keepdims=True))[0])
    stats = np.concatenate([stat(m) for m in _resampled(cols, resamples, seed)])
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def paired_bootstrap_stat(
    values_a: FloatArray,
    values_b: FloatArray,
    stat: Statistic = mean_stat,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> PairedTest:
    """Two-sided paired bootstrap test of stat(a) - stat(b) on the same examples.

    Both systems are resampled with the same indices. ``a_only`` / ``b_only`` count the
    examples where a, respectively b, scores higher; ``statistic`` and ``diff`` are the
    observed gap.
    """
    _check_resampling(resamples)
    a, b = _columns(values_a), _columns(values_b)
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has {b.shape}")
    observed = float(
        stat(a.mean(axis=0, keepdims=True))[0] - stat(b.mean(axis=0, keepdims=True))[0]
    )
    both = np.concatenate([a, b], axis=1)
    k = a.shape[1]
    diffs = np.concatenate(
        [stat(m[:, :k]) - stat(m[:, k:]) for m in _resampled(both, resamples, seed)]
    )
    p = min(1.0, 2.0 * min(float(np.mean(diffs <= 0.0)), float(np.mean(diffs >= 0.0))))
    per_a, per_b = stat(a), stat(b)
    a_only = int(np.count_nonzero(per_a > per_b))
    b_only = int(np.count_nonzero(per_b > per_a))
    return PairedTest("paired-bootstrap", observed, p, a_only, b_only, observed)


def percentile(values: Sequence[float], q: float) -> float:
    """q-th percentile (0-100) with numpy's default linear interpolation; nan when empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must lie in [0, 100]")
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (Holm 1979, Scand. J. Statistics 6:65-70).

    Sorted ascending, the i-th of m p-values (1-based) becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; returned in the input order. Rejecting
    where the adjusted p < alpha controls the family-wise error rate at alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def minimum_detectable_difference(
    diffs: Sequence[float] | FloatArray, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Smallest true mean difference a paired two-sided test on these examples would detect.

    ``diffs`` are per-example score differences between two candidates (for 0/1
    correctness, the discordant pairs give +1/-1); the normal approximation
    ``(z_{1-alpha/2} + z_{power}) * sd(diffs) / sqrt(n)`` (for McNemar this is Connor's
    1987 sample-size formula, Biometrics 43:207-211, solved for the difference with the
    discordant share as the variance). In the metric's units (0.06 = 6 points); None
    when fewer than two examples or every difference is equal.
    """
    from statistics import NormalDist

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return None
    sd = float(d.std(ddof=1))
    if sd == 0:
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return z * sd / math.sqrt(d.size)


def median_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> Interval:
    """The median with a percentile-bootstrap interval (Efron & Tibshirani 1993, ch. 13).

    For repeated timings: ``values`` in any unit, the interval in the same unit. Raises
    ValueError when ``values`` is empty.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to take the median of")
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(meds, [tail, 100 - tail])
    return Interval(float(np.median(v)), float(low), float(high))
