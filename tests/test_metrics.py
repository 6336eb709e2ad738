from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from adaptlab.evaluation import (
    accuracy,
    accuracy_codes,
    bootstrap_ci,
    classification_metrics,
    encode,
    macro_f1,
    macro_f1_codes,
    mcnemar,
    paired_bootstrap,
    percentile,
)
from adaptlab.evaluation.stats import _binom_half_cdf, _index_blocks, _per_row

LABELS = ["billing", "bug", "feature", "other"]


def _random_run(seed: int, n: int = 200) -> tuple[list[str], list[str | None]]:
    """Gold never uses 'other'; predictions include None and an off-label string."""
    rng = np.random.default_rng(seed)
    gold = [str(x) for x in rng.choice(LABELS[:3], size=n)]
    pool: list[str | None] = [*LABELS, None, "garbage"]
    pred = [pool[i] for i in rng.choice(len(pool), size=n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])]
    # Keep some predictions right so the scores are not all near zero.
    pred = [g if rng.random() < 0.4 else p for g, p in zip(gold, pred, strict=True)]
    return gold, pred


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_matches_sklearn(seed: int) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    gold, pred = _random_run(seed)
    # sklearn needs strings; a non-label string is treated as wrong and lands in no column.
    pred_s = ["<none>" if p is None else p for p in pred]

    m = classification_metrics(gold, pred, LABELS)

    assert m.n == len(gold)
    assert m.unparsed == sum(p is None or p not in LABELS for p in pred)
    assert m.labels == LABELS
    assert m.accuracy == pytest.approx(skm.accuracy_score(gold, pred_s))
    assert m.macro_f1 == pytest.approx(
        skm.f1_score(gold, pred_s, average="macro", labels=LABELS, zero_division=0)
    )
    p, r, f, s = skm.precision_recall_fscore_support(gold, pred_s, labels=LABELS, zero_division=0)
    for i, label in enumerate(LABELS):
        cm = m.per_class[label]
        assert cm.precision == pytest.approx(p[i])
        assert cm.recall == pytest.approx(r[i])
        assert cm.f1 == pytest.approx(f[i])
        assert cm.support == s[i]
    assert m.per_class["other"].support == 0
    assert m.confusion == skm.confusion_matrix(gold, pred_s, labels=LABELS).tolist()
    # Unparsed predictions are missing from their gold row.
    assert sum(map(sum, m.confusion)) == m.n - m.unparsed


def test_string_and_code_shortcuts_agree() -> None:
    gold, pred = _random_run(7)
    m = classification_metrics(gold, pred, LABELS)
    g, p = encode(gold, pred, LABELS)
    assert p.min() == -1
    assert accuracy(gold, pred) == pytest.approx(m.accuracy)
    assert accuracy_codes(g, p) == pytest.approx(m.accuracy)
    assert macro_f1(gold, pred, LABELS) == pytest.approx(m.macro_f1)
    assert macro_f1_codes(g, p, len(LABELS)) == pytest.approx(m.macro_f1)


def test_all_unparsed_and_perfect() -> None:
    gold = ["a", "b", "a"]
    none = classification_metrics(gold, [None, None, "zzz"], ["a", "b"])
    assert none.accuracy == 0.0
    assert none.macro_f1 == 0.0
    assert none.unparsed == 3
    assert none.confusion == [[0, 0], [0, 0]]
    assert none.per_class["a"].support == 2

    perfect = classification_metrics(gold, gold, ["a", "b"])
    assert perfect.accuracy == 1.0
    assert perfect.macro_f1 == 1.0
    assert perfect.confusion == [[2, 0], [0, 1]]


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        classification_metrics(["a"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics([], [], ["a"])
    with pytest.raises(ValueError):
        classification_metrics(["c"], ["a"], ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics(["a"], ["a"], ["a", "a"])
    with pytest.raises(ValueError):
        accuracy([], [])
    with pytest.raises(ValueError):
        macro_f1_codes(np.array([0, 3]), np.array([0, 1]), 3)


def _pairs(
    b: int, c: int, both_right: int = 10, both_wrong: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    bb = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(bb)


def _brute_exact_p(b: int, c: int) -> float:
    m = b + c
    tail = sum(Fraction(math.comb(m, i), 2**m) for i in range(min(b, c) + 1))
    return min(1.0, float(2 * tail))


@pytest.mark.parametrize(("b", "c"), [(0, 1), (1, 0), (3, 7), (12, 2), (6, 6), (0, 24)])
def test_mcnemar_exact_matches_brute_force(b: int, c: int) -> None:
    a, bb = _pairs(b, c)
    t = mcnemar(a, bb)
    assert t.name == "mcnemar-exact"
    assert (t.a_only, t.b_only) == (b, c)
    assert t.p_value == pytest.approx(_brute_exact_p(b, c), rel=1e-12)
    assert t.diff == pytest.approx(a.mean() - bb.mean())


@pytest.mark.parametrize(("b", "c"), [(13, 12), (40, 20), (300, 250), (5000, 5200)])
def test_mcnemar_chi2_for_large_counts(b: int, c: int) -> None:
    a, bb = _pairs(b, c)
    t = mcnemar(a, bb)
    assert t.name == "mcnemar-chi2"
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    assert t.statistic == pytest.approx(stat)
    chi2 = pytest.importorskip("scipy.stats").chi2
    assert t.p_value == pytest.approx(chi2.sf(stat, 1), rel=1e-9)


def test_mcnemar_known_value_and_extremes() -> None:
    # (|40-20|-1)^2/60 = 6.0167; chi2(1) survival at that point is about 0.01417.
    assert mcnemar(*_pairs(40, 20)).p_value == pytest.approx(0.014171, abs=1e-5)
    assert mcnemar(*_pairs(20, 2)).p_value < 0.05
    assert mcnemar(*_pairs(6, 5)).p_value > 0.5
    same = mcnemar(*_pairs(0, 0))
    assert (same.p_value, same.statistic, same.diff) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        mcnemar(np.array([True]), np.array([True, False]))


def test_binomial_tail_does_not_overflow() -> None:
    # Symmetry: P(X <= n/2) = 1/2 + P(X = n/2)/2 for even n.
    n = 4000
    log_mid = math.lgamma(n + 1) - 2 * math.lgamma(n / 2 + 1) - n * math.log(2)
    assert _binom_half_cdf(n // 2, n) == pytest.approx(0.5 + math.exp(log_mid) / 2, rel=1e-12)
    assert _binom_half_cdf(0, n) == 0.0


def _coded(n: int, acc: float, seed: int, n_labels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_labels, size=n)
    wrong = rng.integers(-1, n_labels, size=n)
    p = np.where(rng.random(n) < acc, g, wrong)
    return g, p


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_per_row_matches_scalar_metric(metric: str) -> None:
    g, p = _coded(50, 0.6, seed=1)
    idx = next(_index_blocks(g.size, 20, seed=3))
    rows = _per_row(g[idx], p[idx], 3, metric)
    for k, row in enumerate(idx):
        gi, pi = g[row], p[row]
        want = macro_f1_codes(gi, pi, 3) if metric == "macro_f1" else accuracy_codes(gi, pi)
        assert rows[k] == pytest.approx(want)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_bootstrap_ci(metric: str) -> None:
    g, p = _coded(200, 0.7, seed=0)
    ci = bootstrap_ci(g, p, 3, metric=metric, seed=1)
    assert ci.low <= ci.estimate <= ci.high
    assert ci.low < ci.high
    assert bootstrap_ci(g, p, 3, metric=metric, seed=1) == ci
    assert bootstrap_ci(g, p, 3, metric=metric, seed=2) != ci

    g4, p4 = _coded(3200, 0.7, seed=0)
    big = bootstrap_ci(g4, p4, 3, metric=metric, seed=1)
    assert big.high - big.low < (ci.high - ci.low) / 2

    narrow = bootstrap_ci(g, p, 3, metric=metric, seed=1, confidence=0.5)
    assert ci.low <= narrow.low <= narrow.high <= ci.high


def test_bootstrap_ci_rejects_bad_arguments() -> None:
    g, p = _coded(20, 0.5, seed=0)
    with pytest.raises(ValueError):
        bootstrap_ci(g, p, 3, metric="f2")
    with pytest.raises(ValueError):
        bootstrap_ci(g, p, 3, confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(g, p, 3, resamples=0)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_paired_bootstrap(metric: str) -> None:
    g, good = _coded(300, 0.9, seed=0)
    _, weak = _coded(300, 0.5, seed=1)
    weak = np.where(np.random.default_rng(2).random(300) < 0.5, g, weak)
    better = paired_bootstrap(g, good, weak, 3, metric=metric, seed=0)
    assert better.name == "paired-bootstrap"
    assert better.statistic > 0
    assert better.p_value < 0.01
    assert better.a_only > better.b_only
    assert better.diff == pytest.approx(np.mean(g == good) - np.mean(g == weak))

    same = paired_bootstrap(g, good, good.copy(), 3, metric=metric, seed=0)
    assert same.p_value == 1.0
    assert (same.statistic, same.a_only, same.b_only, same.diff) == (0.0, 0, 0, 0.0)

    again = paired_bootstrap(g, good, weak, 3, metric=metric, seed=0)
    assert again == better


def test_percentile() -> None:
    values = [12.0, 3.5, 7.0, 100.0, 1.0, 8.25]
    for q in (0, 5, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([4.0], 95) == 4.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)
