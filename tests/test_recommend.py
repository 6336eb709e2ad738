"""The decision rule: a winner only with a significant lead, else the cheapest within noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adaptlab.engine.summary import ProjectSummary, summarize_run
from adaptlab.store import PredictionRow, ResultRow, RunStore

LABELS = ["a", "b"]
N = 200
GOLD = [LABELS[i % 2] for i in range(N)]


def _store(
    tmp_path: Path,
    spec: dict[str, tuple[int | range, float, float]],
    profile: dict[str, Any] | None = None,
    **cost: Any,
) -> ProjectSummary:
    """spec: name -> (correct rows: the first n, or a range; predict CPU seconds for N
    rows, fit CPU seconds)."""
    config = {
        "name": "t",
        "data": {"path": "d.jsonl"},
        "labels": {"a": "first", "b": "second"},
        "candidates": [{"name": n, "strategy": "zero-shot"} for n in spec],
        "evaluation": {"bootstrap_resamples": 200},
        "cost": {"cpu_hour_usd": 36.0, "monthly_requests": 100_000, **cost},
        "profile": profile or {},
    }
    with RunStore(tmp_path / "runs.db") as store:
        store.start_run(
            "r",
            project="t",
            config=config,
            data_fingerprint="f",
            seed=0,
            model={},
            split={"train": 1000, "val": 100, "test": N},
        )
        for pos, (name, (correct, pred_cpu, fit_cpu)) in enumerate(spec.items()):
            right = range(correct) if isinstance(correct, int) else correct
            rows = [
                PredictionRow(
                    f"x:{i}", f"t{i}", g, g if i in right else LABELS[1 - i % 2], 1.0, 5.0
                )
                for i, g in enumerate(GOLD)
            ]
            result = ResultRow(
                name,
                name,
                "zero-shot",
                {},
                fit_cpu,
                fit_cpu,
                pred_cpu,
                pred_cpu,
                N,
                fit_cpu > 0,
                {},
            )
            store.save_result(result, rows, [])
            store.link("r", pos, name, name, reused=False)
        store.finish_run("r")
        return summarize_run(store)


def test_significant_lead_wins_even_if_dearer(tmp_path: Path) -> None:
    s = _store(tmp_path, {"cheap": (120, 1.0, 0.0), "good": (190, 4.0, 100.0)})
    assert s.recommendation.winner == "good"
    assert s.recommendation.kind == "significant"
    assert "McNemar p" in s.recommendation.reasons[0]
    assert "95.0%" in s.recommendation.reasons[0]


# 120 against 124 correct of 200, 36 and 40 of them on rows the other gets wrong: a lead
# of 4 examples, not significant (McNemar p = 0.73) and within half a standard error of
# the paired difference (SE = sqrt(76 - 16/200)/200 = 4.4 examples): a tie.
CLOSE = range(40, 160)
LEAD = range(124)


def test_tie_goes_to_the_clearly_cheaper(tmp_path: Path) -> None:
    # 'good' costs 4x per request
    s = _store(tmp_path, {"cheap": (CLOSE, 1.0, 0.0), "good": (LEAD, 4.0, 0.0)})
    # the comparison is against the best scoring candidate, on the selection split
    assert s.candidate("cheap").vs_chosen is not None
    assert s.candidate("cheap").vs_chosen.p_value > 0.05  # type: ignore[union-attr]
    assert s.selected_on == "test"  # these stored results hold no validation answers
    assert s.recommendation.winner == "cheap"
    assert s.recommendation.kind == "cheapest-within-noise"
    assert "cheapest of them" in s.recommendation.reasons[0]


def test_costs_within_tolerance_count_as_equal(tmp_path: Path) -> None:
    # 'good' costs 10% more: inside the default 25% tolerance, so accuracy decides
    spec: dict[str, tuple[int | range, float, float]] = {
        "cheap": (CLOSE, 1.0, 0.0),
        "good": (LEAD, 1.1, 0.0),
    }
    s = _store(tmp_path / "a", spec, negligible_usd=0.0)
    assert s.recommendation.winner == "good"
    assert "within 25%" in s.recommendation.reasons[0]
    assert s.recommendation.kind == "best-of-equal-cost"
    # with no tolerance (and no negligible amount) the cheaper one is picked
    cheap = _store(tmp_path / "b", spec, tie_tolerance=0.0, negligible_usd=0.0)
    assert cheap.recommendation.winner == "cheap"


def test_a_negligible_cost_difference_does_not_buy_the_weaker_candidate(tmp_path: Path) -> None:
    # 4x the cost per request, but 60 against 240 USD a year: over the 100 USD that counts
    spec: dict[str, tuple[int | range, float, float]] = {
        "cheap": (CLOSE, 1.0, 0.0),
        "good": (LEAD, 4.0, 0.0),
    }
    assert _store(tmp_path / "a", spec).recommendation.winner == "cheap"
    # at a tenth of the volume the difference is 18 USD a year: negligible, quality decides
    s = _store(tmp_path / "b", spec, monthly_requests=10_000)
    assert s.recommendation.winner == "good"
    assert "which no budget notices" in s.recommendation.reasons[0]


def test_cost_arithmetic(tmp_path: Path) -> None:
    s = _store(tmp_path / "a", {"x": (150, 2.0, 72.0)}, profile={"hosting": "shared"})
    c = s.candidate("x")
    # 2 CPU-s for 200 requests = 0.01 s each; at 36 USD/h = 0.01 USD/s -> 1e-4 USD/request
    assert abs(c.cost_per_1k_usd - 0.1) < 1e-12
    assert abs(c.setup_cost_usd - 0.72) < 1e-12
    assert abs(c.monthly_cost_usd - 10.0) < 1e-9
    # a dedicated machine (the default): an encoder candidate pays for a CPU server
    dedicated = _store(tmp_path / "b", {"x": (150, 2.0, 72.0)}).candidate("x")
    assert abs(dedicated.monthly_cost_usd - 40.0) < 1e-9


def test_a_single_candidate_is_no_recommendation(tmp_path: Path) -> None:
    s = _store(tmp_path, {"alone": (150, 1.0, 0.0)})
    assert s.recommendation.kind == "only-candidate"
    assert "nothing was compared" in s.recommendation.reasons[0]
