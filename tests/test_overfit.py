"""The overfitting report read back from a fine-tune's stored info and predictions."""

from __future__ import annotations

from typing import Any

from adaptlab.evaluation.overfit import overfit_report

GOLD = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"]
BEST = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "a"]  # 9 of 10
LAST = ["a", "b", "b", "a", "b", "a", "a", "b", None, "b"]  # 5 of 10


def info(**extra: Any) -> dict[str, Any]:
    training = {
        "best_step": 40,
        "last_step": 100,
        "best_val_loss": 0.25,
        "last_val_loss": 0.61,
        "train_loss_at_best": 0.2,
        "stopped_early": True,
    }
    return {"training": training, **extra}


def test_best_against_last_checkpoint_with_mcnemar() -> None:
    last = {"step": 100, "predictions": LAST, "unparsed": 1}
    report = overfit_report(info(last_checkpoint=last), GOLD, BEST)
    assert report is not None
    assert report.best_accuracy == 0.9 and report.last_accuracy == 0.5
    assert report.gap is not None and abs(report.gap - 0.05) < 1e-12
    assert report.test is not None and (report.test.a_only, report.test.b_only) == (5, 1)
    assert report.last_unparsed == 1
    text = " ".join(report.lines())
    assert "step 40" in text and "+0.050" in text and "stopped early at step 100" in text
    assert "best checkpoint 90.0%, last 50.0%" in text and "McNemar" in text


def test_without_last_answers_or_with_broken_info() -> None:
    report = overfit_report(info(), GOLD, BEST)
    assert report is not None and report.last_accuracy is None and report.test is None
    # Another task (no gold compared) or a count mismatch: losses only, no crash.
    short = {"predictions": LAST[:3]}
    assert overfit_report(info(last_checkpoint=short), GOLD, BEST).test is None  # type: ignore[union-attr]
    assert overfit_report(info(last_checkpoint={"predictions": LAST}), [], []).test is None  # type: ignore[union-attr]
    for broken in ({}, {"training": "x"}, {"training": {"best_step": "forty"}}):
        assert overfit_report(broken, GOLD, BEST) is None
