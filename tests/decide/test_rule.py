"""The rule among tied candidates (adaptlab.decide.rule), by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptlab.decide.rule import (
    Option,
    RuleSettings,
    choose,
    paired_se,
    selection_bias,
    within_se,
)

R = 600_000  # requests over the horizon


def _o(name: str, est: float, p95: float, fit: float, total: float) -> Option:
    return Option(name, est, p95, fit, total, R)


def test_the_leader_wins_when_nothing_sets_another_apart() -> None:
    c = choose([_o("a", 0.90, 20, 100, 500), _o("b", 0.89, 30, 120, 520)])
    assert (c.winner, c.decided_by, c.ratio) == ("a", "estimate", None)


def test_cost_first_then_latency_then_training() -> None:
    lead = _o("lead", 0.90, 300, 2000, 400)
    # 300 USD dearer over the horizon: more than negligible_usd (100) and 25%
    cheap = _o("cheap", 0.89, 300, 2000, 100)
    c = choose([lead, cheap])
    assert (c.winner, c.decided_by) == ("cheap", "cost")
    assert c.ratio == pytest.approx(4.0)
    # equal costs: latency 2x or more lower decides, with the measured ratio
    fast = _o("fast", 0.89, 3, 2000, 400)
    c = choose([lead, fast])
    assert (c.winner, c.decided_by) == ("fast", "latency")
    assert c.ratio == pytest.approx(100.0)
    # equal costs and latencies: training 2x or more faster decides
    quick = _o("quick", 0.89, 290, 30, 400)
    c = choose([lead, quick])
    assert (c.winner, c.decided_by) == ("quick", "training")
    # under the floors (10 ms, 60 s) values count as equal: the estimate decides
    assert choose([_o("x", 0.9, 9, 59, 1), _o("y", 0.8, 1, 1, 1)]).winner == "x"


def test_an_unmeasured_latency_is_neither_dropped_nor_the_bar() -> None:
    c = choose([_o("lead", 0.9, math.nan, 10, 50), _o("b", 0.85, 400, 10, 50)])
    assert c.winner == "lead"


def test_a_known_error_cost_chooses_the_lowest_expected_total() -> None:
    lead, fast = _o("lead", 0.90, 300, 2000, 400), _o("fast", 0.89, 3, 20, 0)
    # one point of 600,000 requests at 0.01 USD = 60 USD < the 400 USD saved: fast
    assert choose([lead, fast], RuleSettings(error_cost_usd=0.01)).winner == "fast"
    # at 1 USD a wrong answer the point is worth 6,000 USD: lead
    c = choose([lead, fast], RuleSettings(error_cost_usd=1.0))
    assert (c.winner, c.decided_by) == ("lead", "estimate")
    # without it, the flip is stated: 400 USD / (600,000 x 0.01) = 0.0667 USD
    unknown = choose([lead, fast])
    assert unknown.error_cost_flip_usd == pytest.approx(400 / (R * 0.01))


def test_paired_se_and_the_margin_by_hand() -> None:
    a = np.array([1.0] * 4 + [0.0] * 3 + [1.0] * 93)
    b = np.array([0.0] * 4 + [1.0] * 3 + [1.0] * 93)
    # differences: four +1, three -1, 93 zeros; mean 0.01, sd sqrt((7 - 100*0.0001)/99)
    se = paired_se(a, b)
    assert se == pytest.approx(math.sqrt((7 - 0.01) / 99) / 10)
    assert within_se(0.97, 0.96, se, 0.5)  # 1 point against half of 2.6
    assert not within_se(0.97, 0.90, se, 0.5)
    assert paired_se(np.ones(1), np.ones(1)) == 0.0
    with pytest.raises(ValueError):
        paired_se(np.ones(3), np.ones(4))


def test_selection_bias_is_the_optimism_of_the_maximum() -> None:
    rng = np.random.default_rng(0)
    # eight candidates of equal true accuracy 0.8 on 100 examples: the best is lucky
    cols = [(rng.random(100) < 0.8).astype(float).reshape(-1, 1) for _ in range(8)]
    est = [c.mean() for c in cols]
    best = int(np.argmax(est))
    bias = selection_bias(cols, best, lambda m: m[:, 0], resamples=200, seed=0)
    assert 0.0 < bias < est[best] - 0.8 + 0.05
    # one candidate far ahead of the rest: nothing to correct
    far = [np.ones((100, 1)), np.zeros((100, 1))]
    assert selection_bias(far, 0, lambda m: m[:, 0]) == 0.0
    assert selection_bias([np.ones((5, 1))], 0, lambda m: m[:, 0]) == 0.0
    with pytest.raises(ValueError):
        selection_bias(far, 2, lambda m: m[:, 0])
