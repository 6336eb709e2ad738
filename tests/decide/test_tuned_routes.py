"""Routes compared at their best: what a tuned candidate's search bought, and a verdict
that compares tuned candidates, setting aside the untuned ones of the same route.

The runs are built by hand (:mod:`tests.report.synthetic`): every figure follows from
the spans of validation and test rows each candidate is right on, and from the tuning
record written beside them in the shape the tuned strategies store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adaptlab import Project, summarize_project
from adaptlab.cli import cli
from adaptlab.evaluation.tuning import tuning_report
from adaptlab.report.results import results_document
from tests.report.synthetic import N_VAL, Spec, write_project


def _record(default_right: int, tuned_right: int, **extra: Any) -> dict[str, Any]:
    """A tuning record: the default right on the first ``default_right`` validation rows,
    the tuned setting on the first ``tuned_right``."""
    return {
        "method": "successive halving",
        "metric": "accuracy",
        "space": {"learning_rate": [1e-4, 3e-4]},
        "default": {
            "params": {"learning_rate": 1e-4},
            "val_score": default_right / N_VAL,
            "val_per_example": [1.0 if i < default_right else 0.0 for i in range(N_VAL)],
        },
        "tuned": {
            "params": {"learning_rate": 3e-4},
            "val_score": tuned_right / N_VAL,
            "val_per_example": [1.0 if i < tuned_right else 0.0 for i in range(N_VAL)],
        },
        "trials": [
            {"params": {"learning_rate": lr}, "rung": 0, "n_val": N_VAL, "val_score": 0.5}
            for lr in (1e-4, 3e-4)
        ],
        "budget": {
            "max_minutes": 10.0,
            "max_calls": 300,
            "max_usd": None,
            "minutes": 9.5,
            "calls": 212,
            "usd": 0.0,
            "stopped_by": None,
        },
        **extra,
    }


#: ``tuned`` searched its settings: default right on 120 of 200 validation rows, tuned on
#: 160 (40 discordant rows, all for the tuned setting). ``plain`` is an untuned candidate
#: of the same route (zero-shot, no model named) that leads on validation (170) but is
#: set aside; ``tfidf`` is another route, untuned, and stays.
TUNED: dict[str, Spec] = {
    "plain": Spec(170, 140),
    "tuned": Spec(160, 150, info={"tuning": _record(120, 160)}),
    "tfidf": Spec(100, 100, strategy="tfidf-lr"),
}


@pytest.fixture()
def tuned_project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "tuned", TUNED)


def test_what_tuning_bought_is_a_paired_test_on_validation() -> None:
    r = tuning_report({"tuning": _record(120, 160)}, 0.75, "accuracy", resamples=500)
    assert r is not None
    assert r.default.estimate == pytest.approx(0.6) and r.tuned.estimate == pytest.approx(0.8)
    assert r.gain.estimate == pytest.approx(0.2)
    assert r.gain.low > 0  # 40 rows right only for the tuned setting: the interval is above 0
    assert r.test is not None and r.test.name.startswith("mcnemar")
    assert (r.test.a_only, r.test.b_only) == (40, 0) and r.test.p_value < 0.001
    assert r.drop == pytest.approx(0.05)  # 80% on validation, 75% on test
    assert (r.trials, r.calls, r.minutes) == (2, 212, 9.5)
    assert r.changed() == {"learning_rate": (1e-4, 3e-4)}
    lines = r.lines()
    assert "2 trials in 9.5 of 10 minutes, 212 of 300 calls" in lines[0]
    assert "learning_rate 0.0001 → 0.0003" in lines[0]
    assert "default 60.0% → tuned 80.0% on 200 examples" in lines[1]
    assert "a drop of 5.0 points" in lines[2]


def test_a_kept_default_has_no_test_and_no_drop_on_another_metric() -> None:
    record = _record(150, 150, metric="recall@5")
    record["tuned"]["params"] = record["default"]["params"]
    r = tuning_report({"tuning": record}, 0.7, "accuracy", resamples=200)
    assert r is not None and r.kept_default
    assert r.test is None and r.gain.estimate == 0
    assert r.drop is None and r.test_score is None  # chosen on recall@5, scored on accuracy
    assert len(r.lines()) == 2 and "kept the default setting" in r.lines()[0]


@pytest.mark.parametrize(
    "broken",
    [
        "not a record",
        {"default": {"val_per_example": [1.0]}},  # no tuned setting
        {"default": {"val_per_example": [1.0, 0.0]}, "tuned": {"val_per_example": [1.0]}},
        {"default": {"val_per_example": ["1"]}, "tuned": {"val_per_example": ["1"]}},
        {"default": {"val_per_example": [True]}, "tuned": {"val_per_example": [True]}},
        {"default": {"val_per_example": []}, "tuned": {"val_per_example": []}},
        {"default": {"val_per_example": [float("nan")]}, "tuned": {"val_per_example": [1.0]}},
    ],
)
def test_a_malformed_record_is_no_report(broken: Any) -> None:
    assert tuning_report({"tuning": broken}, 0.5, "accuracy", resamples=200) is None


def test_the_verdict_compares_routes_by_their_tuned_candidates(tuned_project: Path) -> None:
    s = summarize_project(Project.load(tuned_project))
    v = s.verdict
    # 'plain' leads on validation (170 against 160) but is its route's untuned sibling.
    assert dict(v.untuned) == {"plain": "tuned"} and v.tuned == ("tuned",)
    assert v.winner == "tuned" and v.leader == "tuned"
    assert set(v.selection_tests) == {"tfidf"}  # the compared pool: tuned candidates + others
    assert "plain" in v.test_tests  # still tested against the winner on test, and shown
    assert "plain" not in v.comparable
    reasons = " ".join(s.recommendation.reasons)
    assert "Routes are compared at their best, by their tuned candidates (tuned)" in reasons
    assert "set aside as the same route on the same model: tuned for plain" in reasons
    assert "not tuned, compared as configured: the classical route" in reasons
    record = {r["name"]: r for r in results_document(s)["candidates"]}
    assert record["tuned"]["tuned"] is True and record["plain"]["tuned"] is False
    assert record["tuned"]["tuning_default_val"] == pytest.approx(0.6)
    assert record["tuned"]["tuning_val_test_drop"] == pytest.approx(0.05)
    assert record["plain"]["tuning_p"] is None
    json.dumps(results_document(s), allow_nan=False)  # strict JSON


def test_a_tuned_candidate_alone_with_its_default_is_no_recommendation(tmp_path: Path) -> None:
    spec = {k: v for k, v in TUNED.items() if k != "tfidf"}
    s = summarize_project(Project.load(write_project(tmp_path / "one-route", spec)))
    assert s.verdict.kind == "only-candidate" and s.verdict.winner == "tuned"
    first = s.recommendation.reasons[0]
    assert first.startswith("tuned is the only route left to compare")
    assert "plain is its untuned setting" in first and "run all candidates" not in first


def test_without_tuned_candidates_nothing_is_set_aside(tmp_path: Path) -> None:
    root = write_project(tmp_path / "plain", {k: v._replace(info=None) for k, v in TUNED.items()})
    s = summarize_project(Project.load(root))
    assert dict(s.verdict.untuned) == {} and s.verdict.winner == "plain"
    assert not any("compared at their best" in r for r in s.recommendation.reasons)


def test_the_terminal_and_the_report_say_what_tuning_bought(tuned_project: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "-p", str(tuned_project)], terminal_width=100)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "tuning tuned:" in out
    assert "default 60.0% → tuned 80.0% on 200 examples" in out
    page = (tuned_project / "reports" / "report.html").read_text(encoding="utf-8")
    assert "What tuning bought" in page and "a drop of 5.0 points" in page
