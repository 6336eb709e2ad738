"""Choosing without peeking: Holm, the minimum detectable difference, val before test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptlab.engine.summary import ProjectSummary, summarize_run
from adaptlab.evaluation.stats import holm, median_ci, minimum_detectable_difference
from adaptlab.store import PredictionRow, ResultRow, RunStore

LABELS = ["a", "b"]


def test_holm_by_hand() -> None:
    # sorted: 0.01 (x3) = 0.03, 0.02 (x2) = 0.04, 0.04 (x1) = 0.04; back in input order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # step-down monotone: a later p-value never adjusts below an earlier one
    assert holm([0.001, 0.5, 0.0011]) == pytest.approx([0.003, 0.5, 0.003])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


def test_minimum_detectable_difference_by_hand() -> None:
    # 138 examples, 14 discordant split evenly: mean 0, sd = sqrt(14 / 137) = 0.31967;
    # (1.95996 + 0.84162) * 0.31967 / sqrt(138) = 0.89558 / 11.7473 = 0.07624 -> ~7.6 points
    d = np.array([1.0] * 7 + [-1.0] * 7 + [0.0] * 124)
    assert minimum_detectable_difference(d) == pytest.approx(0.07624, abs=1e-5)
    assert minimum_detectable_difference(np.zeros(50)) is None
    assert minimum_detectable_difference([1.0]) is None


def test_median_interval_brackets_the_median() -> None:
    values = list(np.random.default_rng(0).lognormal(3, 0.3, size=200))
    ci = median_ci(values)
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate == pytest.approx(float(np.median(values)))
    with pytest.raises(ValueError, match="no values"):
        median_ci([])


Span = int | tuple[int, int]  # correct rows: the first N, or those in [start, stop)


def _rows(gold: list[str], correct: Span) -> list[PredictionRow]:
    start, stop = (0, correct) if isinstance(correct, int) else correct
    return [
        PredictionRow(
            f"x:{i}", f"t{i}", g, g if start <= i < stop else LABELS[1 - LABELS.index(g)], 1.0, 5.0
        )
        for i, g in enumerate(gold)
    ]


def _store(
    tmp_path: Path, spec: dict[str, tuple[Span, Span]], n_val: int = 200, **profile: Any
) -> ProjectSummary:
    """spec: name -> (correct on val, correct on test); 200 test examples."""
    gold_test = [LABELS[i % 2] for i in range(200)]
    gold_val = [LABELS[i % 2] for i in range(n_val)]
    config = {
        "name": "t",
        "data": {"path": "d.jsonl"},
        "labels": {"a": "first", "b": "second"},
        "candidates": [{"name": n, "strategy": "zero-shot"} for n in spec],
        "evaluation": {"bootstrap_resamples": 200, "baseline": False},
        "profile": profile,
    }
    with RunStore(tmp_path / "runs.db") as store:
        store.start_run(
            "r",
            project="t",
            config=config,
            data_fingerprint="f",
            seed=0,
            model={},
            split={"train": 1000, "val": n_val, "test": 200},
        )
        for pos, (name, (val_ok, test_ok)) in enumerate(spec.items()):
            result = ResultRow(name, name, "zero-shot", {}, 0.0, 0.0, 1.0, 1.0, 200, False, {})
            store.save_result(
                result,
                _rows(gold_test, test_ok),
                [],
                val_predictions=_rows(gold_val, val_ok) if n_val else (),
            )
            store.link("r", pos, name, name, reused=False)
        store.finish_run("r")
        return summarize_run(store)


def test_the_winner_is_chosen_on_val_and_reported_on_test(tmp_path: Path) -> None:
    # 'lucky' is best on test only; on val 'steady' leads clearly: val decides
    s = _store(tmp_path, {"steady": (190, 170), "lucky": (120, 180)})
    assert s.selected_on == "val"
    assert s.recommendation.winner == "steady"
    assert s.best_on_test == "lucky"
    assert "on validation" in s.recommendation.reasons[0]
    assert "On the test split, used once to report: 85.0%" in s.recommendation.reasons[1]
    steady, lucky = s.candidate("steady"), s.candidate("lucky")
    assert steady.selection_ci.estimate == pytest.approx(0.95)
    assert steady.quality == pytest.approx(0.85)
    assert lucky.vs_chosen is not None and lucky.vs_chosen.p_value < 0.05


def test_holm_guards_a_winner_against_several_rivals(tmp_path: Path) -> None:
    # each rival is right on rows 30-164 of val, the leader on 0-149: 30 against 15
    # discordant rows, McNemar chi2 (|30-15|-1)^2/45 = 4.36, p = 0.037 each; Holm over
    # three comparisons makes that 0.11, so no winner is declared significant
    rival: tuple[Span, Span] = ((30, 165), 150)
    spec: dict[str, tuple[Span, Span]] = {"lead": (150, 150), "r1": rival, "r2": rival, "r3": rival}
    s = _store(tmp_path, spec)
    raw = [s.candidate(n).vs_chosen.p_value for n in ("r1", "r2", "r3")]  # type: ignore[union-attr]
    assert all(p < 0.05 for p in raw), raw
    assert all(s.candidate(n).p_holm >= 0.05 for n in ("r1", "r2", "r3"))  # type: ignore[operator]
    assert s.recommendation.kind in ("best-estimate", "cheapest-within-noise", "best-of-equal-cost")


def test_without_val_answers_the_choice_falls_back_to_test_and_says_so(tmp_path: Path) -> None:
    s = _store(tmp_path, {"x": (0, 190), "y": (0, 120)}, n_val=0)
    assert s.selected_on == "test"
    assert s.recommendation.winner == "x"
    assert any("Chosen on the test split" in r for r in s.recommendation.reasons)


def test_the_profile_rules_out_and_says_what_would_bring_it_back(tmp_path: Path) -> None:
    s = _store(tmp_path, {"big": (190, 190), "small": (150, 150)}, monthly_budget_usd=0.0)
    # every candidate costs more than 0 USD a month: none can be ruled out for all
    assert any("every candidate breaks" in c for c in s.recommendation.changes)
    assert any("cannot be told apart" in c for c in s.recommendation.changes)
