"""The decision rule among candidates that measured within noise of each other.

With a validation split of ~100 examples, candidates a few points apart cannot be
told apart, and picking the highest estimate picks noise: the maximum of several
noisy estimates is biased upward (the winner's curse), and a slow, dear candidate
one example ahead beats a fast, cheap one that is as good. So the verdict first
finds the candidates the evidence cannot separate from the best (``tied``, by
Holm-adjusted paired tests, :mod:`adaptlab.decide.verdict`), then :func:`choose`
decides among them by what the user pays:

- with a known cost of one wrong answer (``profile.error_cost_usd`` > 0): the lowest
  expected total over the horizon, errors x error cost + running + hosting + setup
  (the plug-in Bayes decision under the estimated error rates);
- without it, lexicographically by what was measured, each step keeping the options
  within a factor of the best on that measure: the total cost (within
  ``tie_tolerance`` or ``negligible_usd``, as before), then the p95 latency (within
  ``latency_factor``, times under ``latency_floor_ms`` count as equal), then the
  training time (within ``fit_factor``, under ``fit_floor_s`` equal), then the highest
  estimate. Preferring the simpler of models within noise of the best is the "one
  standard error rule" of Breiman et al. (1984, *Classification and Regression Trees*,
  §3.4.3) and Hastie, Tibshirani & Friedman (2009, *Elements of Statistical Learning*,
  §7.10); here "simpler" is measured: cheaper, faster, quicker to retrain.

``bench/selection_rule.py`` simulates thousands of decisions with known true
accuracies and costs and prints the regret of this rule against best-on-validation
and the rule before it; the defaults here are the ones that table chose.

Everything here is pure (floats in, a :class:`Choice` out), so the benchmark runs the
same code as ``adaptlab decide``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: What decided among tied candidates: the expected total with the error cost, the
#: total cost, the p95 latency, the training time, or the estimate itself.
Decider = Literal["expected-cost", "cost", "latency", "training", "estimate"]

LATENCY_FACTOR = 2.0
LATENCY_FLOOR_MS = 10.0
FIT_FACTOR = 2.0
FIT_FLOOR_S = 60.0


@dataclass(frozen=True)
class Option:
    """One candidate as the rule sees it.

    ``estimate``: the primary metric on the selection evidence (a fraction, higher is
    better). ``p95_ms``: p95 latency in ms (nan: not measured; such an option is never
    removed for its latency and never sets the bar). ``fit_seconds``: wall seconds to
    train it once. ``total_usd``: setup + running + hosting over the horizon at the
    forecast volume, USD, errors not included. ``requests``: requests over the horizon
    (forecast volume x growth factor), which turns an error rate into a count.
    """

    name: str
    estimate: float
    p95_ms: float
    fit_seconds: float
    total_usd: float
    requests: float

    def expected_usd(self, error_cost_usd: float) -> float:
        """Total over the horizon with each expected wrong answer at ``error_cost_usd``."""
        return self.total_usd + self.requests * (1.0 - self.estimate) * error_cost_usd


@dataclass(frozen=True)
class RuleSettings:
    """The rule's thresholds (module docstring). ``error_cost_usd`` 0 means unknown."""

    error_cost_usd: float = 0.0
    tie_tolerance: float = 0.25
    negligible_usd: float = 100.0
    latency_factor: float = LATENCY_FACTOR
    latency_floor_ms: float = LATENCY_FLOOR_MS
    fit_factor: float = FIT_FACTOR
    fit_floor_s: float = FIT_FLOOR_S
    #: The order of the measured steps when the error cost is unknown.
    order: tuple[Literal["cost", "latency", "training"], ...] = ("cost", "latency", "training")


@dataclass(frozen=True)
class Choice:
    """The rule's pick among ``tied`` options and what decided it.

    ``leader`` is the option with the highest estimate. ``decided_by`` names the
    measure that set the winner apart from the leader ("estimate" when the winner is
    the leader). ``ratio`` is the leader's measure over the winner's on that measure
    (e.g. 200.0: the leader's p95 is 200 times the winner's), None for "estimate" and
    "expected-cost". ``error_cost_flip_usd``: with the error cost unknown and a winner
    below the leader's estimate, the cost of one wrong answer above which the leader's
    expected total is lower (None otherwise).
    """

    winner: str
    leader: str
    decided_by: Decider
    ratio: float | None = None
    error_cost_flip_usd: float | None = None


def _by_estimate(o: Option) -> tuple[float, float]:
    return (o.estimate, -o.total_usd)


def _measure(o: Option, step: str) -> float:
    return {"latency": o.p95_ms, "training": o.fit_seconds, "cost": o.total_usd}[step]


def equal_cost(options: Sequence[Option], s: RuleSettings) -> list[Option]:
    """The options whose total counts as the cheapest's: within ``s.tie_tolerance`` of
    it, or less than ``s.negligible_usd`` above it over the horizon (CPU timings move by
    10-20% between runs, and fractions of a cent must not decide)."""
    low = min(o.total_usd for o in options)
    return [
        o
        for o in options
        if o.total_usd <= low * (1 + s.tie_tolerance) or o.total_usd - low <= s.negligible_usd
    ]


def _filter(options: list[Option], step: str, s: RuleSettings) -> list[Option]:
    """The options that stay after ``step``: within the step's factor of the best."""
    if step == "cost":
        return equal_cost(options, s)
    factor, floor = (
        (s.latency_factor, s.latency_floor_ms)
        if step == "latency"
        else (s.fit_factor, s.fit_floor_s)
    )
    values = [_measure(o, step) for o in options]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return options
    bar = factor * max(min(finite), floor)
    # nan (not measured) is kept: no measure, no reason to drop it
    pairs = zip(options, values, strict=True)
    return [o for o, v in pairs if not math.isfinite(v) or max(v, floor) <= bar]


def paired_se(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Standard error of the mean paired difference of per-example scores (two arrays of
    shape (n,), the same examples in the same order): ``sd(a - b) / sqrt(n)``, ddof 1.

    For 0/1 correctness this is the SE of the accuracy difference behind McNemar's test.
    Returns 0.0 for n < 2. Raises ValueError for arrays of different shapes.
    """
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("scores_a and scores_b must be 1-D arrays of the same length")
    if a.size < 2:
        return 0.0
    return float(np.std(a - b, ddof=1) / math.sqrt(a.size))


def within_se(leader: float, estimate: float, se: float, z: float = 1.0) -> bool:
    """Whether ``estimate`` is within ``z`` standard errors ``se`` below ``leader`` (the
    one-standard-error rule: Breiman et al. 1984, §3.4.3; Hastie et al. 2009, §7.10)."""
    return leader - estimate <= z * se


def choose(tied: Sequence[Option], settings: RuleSettings | None = None) -> Choice:
    """The option to use among ``tied`` (candidates within noise of the best).

    Raises ValueError for an empty ``tied``. See the module docstring for the rule.
    """
    s = settings or RuleSettings()
    if not tied:
        raise ValueError("no options to choose from")
    options = list(tied)
    leader = max(options, key=_by_estimate)
    if s.error_cost_usd > 0:
        pick = min(options, key=lambda o: (o.expected_usd(s.error_cost_usd), -o.estimate))
        return Choice(pick.name, leader.name, "expected-cost" if pick is not leader else "estimate")
    kept = options
    decided: Decider = "estimate"
    for step in s.order:
        after = _filter(kept, step, s)
        if leader in kept and leader not in after:
            decided = step
        kept = after
    pick = max(kept, key=_by_estimate)
    if pick is leader:
        return Choice(pick.name, leader.name, "estimate")
    # The ratio as measured (a 1.6 ms p95 against 331 ms is ~200x); the floors only
    # decide what counts as equal.
    a, b = _measure(leader, decided), _measure(pick, decided)
    ratio = a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else None
    flip = None
    gap = pick.requests * (leader.estimate - pick.estimate)
    if gap > 0:
        flip = max(0.0, (leader.total_usd - pick.total_usd) / gap)
    return Choice(pick.name, leader.name, decided, ratio, flip)


def selection_bias(
    columns: Sequence[np.ndarray],
    chosen: int,
    stat: Callable[[np.ndarray], np.ndarray],
    *,
    resamples: int = 200,
    seed: int = 0,
) -> float:
    """How much the chosen candidate's estimate is inflated by having been the best of K.

    The bootstrap form of Tibshirani & Tibshirani's correction for the minimum
    cross-validation error (2009, Ann. Appl. Stat. 3(2):822-829): over resamples of
    the examples, the mean of (the best candidate's figure - the chosen one's figure),
    which is >= 0. ``columns[j]`` is candidate j's per-example columns (n_j x m) whose
    means ``stat`` turns into the metric (:func:`adaptlab.evaluation.scoring.metric_stat`);
    higher is better. Candidates scored on the same examples (equal n) are resampled
    with the same indices (their correlation kept); otherwise each on its own
    examples, which overstates the spread of their differences and so the bias
    (a conservative correction). Returns 0.0 for fewer than two candidates.
    Raises ValueError when ``chosen`` is out of range.
    """
    k = len(columns)
    if not 0 <= chosen < k:
        raise ValueError(f"chosen must index one of the {k} candidates, not {chosen}")
    if k < 2:
        return 0.0
    cols = [np.asarray(c, dtype=float).reshape(len(c), -1) for c in columns]
    rng = np.random.default_rng(seed)
    paired = len({len(c) for c in cols}) == 1
    gaps = np.empty(resamples)
    for r in range(resamples):
        if paired:
            idx = rng.integers(0, len(cols[0]), len(cols[0]))
            figures = [float(stat(c[idx].mean(axis=0, keepdims=True))[0]) for c in cols]
        else:
            figures = [
                float(stat(c[rng.integers(0, len(c), len(c))].mean(axis=0, keepdims=True))[0])
                for c in cols
            ]
        gaps[r] = max(figures) - figures[chosen]
    return float(gaps.mean())
