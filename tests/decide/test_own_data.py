"""The German-tickets situation (issue 20): a slow candidate one example ahead on
validation, a ~200x faster one behind by one, the faster significantly better on test.

Stored predictions are synthetic, the summary and verdict are the real ones: the new
rule must choose the faster candidate and name the measure that decided.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adaptlab.engine.summary import ProjectSummary, summarize_run
from adaptlab.store import PredictionRow, ResultRow, RunStore

LABELS = ["a", "b"]
N_VAL, N_TEST = 99, 700


def _rows(n: int, right: range, latency_ms: float) -> list[PredictionRow]:
    gold = [LABELS[i % 2] for i in range(n)]
    return [
        PredictionRow(f"x:{i}", f"t{i}", g, g if i in right else LABELS[1 - i % 2], 1.0, latency_ms)
        for i, g in enumerate(gold)
    ]


# name -> (strategy, val correct rows, test correct rows, p95 ms, fit seconds)
SPEC: dict[str, tuple[str, range, range, float, float]] = {
    # 97 of 99 on val; 653 of 700 on test (93.3%); 331 ms; 35 minutes to train
    "finetune": ("finetune", range(97), range(15, 668), 331.0, 2100.0),
    # 96 of 99 on val; 668 of 700 (95.4%); 1.6 ms; 19 s to train
    "tfidf": ("tfidf-lr", range(3, 99), range(668), 1.6, 19.0),
}
# On val: finetune alone right on rows 0-2, tfidf alone on 97-98: a lead of one example,
# 5 discordant rows, SE of the difference sqrt(5 - 1/99)/99 = 2.2 examples: a tie.


def _summary(
    tmp_path: Path,
    spec: dict[str, tuple[str, range, range, float, float]] = SPEC,
    **profile: Any,
) -> ProjectSummary:
    config = {
        "name": "tickets",
        "data": {"path": "d.jsonl"},
        "labels": {"a": "first", "b": "second"},
        "candidates": [{"name": n, "strategy": s[0]} for n, s in spec.items()],
        "evaluation": {"bootstrap_resamples": 200, "baseline": False},
        "profile": profile,
    }
    with RunStore(tmp_path / "runs.db") as store:
        store.start_run(
            "r", project="tickets", config=config, data_fingerprint="f", seed=0, model={},
            split={"train": 900, "val": N_VAL, "test": N_TEST},
        )  # fmt: skip
        for pos, (name, (strategy, val_ok, test_ok, ms, fit)) in enumerate(spec.items()):
            result = ResultRow(
                name, name, strategy, {}, fit, fit, 0.001 * ms * N_TEST, 0.001 * ms * N_TEST,
                N_TEST, strategy == "finetune", {},
            )  # fmt: skip
            store.save_result(
                result,
                _rows(N_TEST, test_ok, ms),
                [],
                val_predictions=_rows(N_VAL, val_ok, ms),
            )
            store.link("r", pos, name, name, reused=False)
        store.finish_run("r")
        return summarize_run(store)


def test_the_faster_candidate_within_noise_wins_and_says_why(tmp_path: Path) -> None:
    s = _summary(tmp_path, hosting="shared")
    v = s.verdict
    assert v.leader == "finetune"  # one example ahead on validation
    assert v.winner == "tfidf"
    assert v.kind == "faster-within-noise"
    assert v.decided_by == "latency"
    assert v.decided_ratio == pytest.approx(331 / 1.6, rel=0.05)
    reason = s.recommendation.reasons[0]
    assert "within noise of finetune" in reason
    assert "207x lower p95 latency" in reason
    assert "111x faster to train" in reason
    # on test the faster one is significantly better: the report must say so, not red
    t = v.test_tests["finetune"]
    assert t.test.diff > 0 and t.p_holm < 0.05  # winner (tfidf) minus finetune
    assert v.best_on_test == "tfidf"
    # what would change it: the error cost at which finetune's estimate pays
    assert v.error_cost_flip_usd is not None
    assert any("if one wrong answer costs you more than" in c for c in s.recommendation.changes)


def test_with_dedicated_servers_cost_decides_first(tmp_path: Path) -> None:
    # the default: the fine-tuned encoder needs a CPU server, TF-IDF none
    s = _summary(tmp_path)
    assert s.verdict.winner == "tfidf"
    assert s.verdict.decided_by == "cost"
    assert "no server of its own" in s.recommendation.reasons[0]
    assert s.candidate("finetune").cost.fixed_monthly_usd == pytest.approx(30.0)


def test_a_known_error_cost_weighs_the_estimates(tmp_path: Path) -> None:
    # at 1 USD a wrong answer, one validation example (1 point) is worth ~6,000 USD a
    # year at 50,000 requests a month: the leader's estimate wins
    s = _summary(tmp_path, hosting="shared", error_cost_usd=1.0)
    assert s.verdict.kind == "lowest-expected-cost"
    assert s.verdict.winner == "finetune"
    assert "with a wrong answer at" in s.recommendation.reasons[0]
    # at a thousandth of a cent, the costs and latencies decide: the faster one
    cheap = _summary(tmp_path / "cheap", hosting="shared", error_cost_usd=0.00001)
    assert cheap.verdict.winner == "tfidf"


def test_the_winners_estimate_is_corrected_for_selection(tmp_path: Path) -> None:
    v = _summary(tmp_path, hosting="shared").verdict
    c = v.corrected
    assert c is not None and c.k == 2 and c.source == "val"
    assert c.bias >= 0
    assert c.corrected <= c.estimate
    # the selection-adjusted interval is wider than the plain 95% one
    plain = _summary(tmp_path / "p", hosting="shared").candidate("tfidf").selection_ci
    assert c.low <= plain.low and c.high >= plain.high


def test_no_break_even_against_a_candidate_below_the_quality_floor(tmp_path: Path) -> None:
    # a prompt-like candidate that trains nothing and is right 10 times in 99: the
    # cheapest to set up, but no alternative at any volume
    spec = {**SPEC, "weak": ("zero-shot", range(10), range(70), 5.0, 0.0)}
    v = _summary(tmp_path, spec, hosting="shared").verdict
    assert "weak" not in v.comparable
    assert v.baseline != "weak"
    assert all(b.baseline != "weak" and b.candidate != "weak" for b in v.break_evens)
    # within the floor (5 points of the leader's estimate) both others are comparable
    assert set(v.comparable) == {"finetune", "tfidf"}
