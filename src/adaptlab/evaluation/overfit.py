"""The overfitting report of a fine-tuned generative model.

A fine-tune records per-step train and validation losses (its curves) and, in its
result's ``info``, the step with the lowest validation loss and the answers of the
last checkpoint on the test split (see
:mod:`adaptlab.strategies.llm_finetune.strategy`). This module reads them back:
the train/val gap at the best step, and the holdout accuracy of the best checkpoint
against the last one with McNemar's paired test (McNemar 1947; exact binomial when
discordant pairs are few), so "early stopping helped" is a tested claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptlab.evaluation.stats import PairedTest, mcnemar


@dataclass(frozen=True)
class OverfitReport:
    """Losses are mean cross-entropy over assistant tokens (nats); steps are optimizer steps.

    ``gap`` is validation loss minus the last train loss logged at or before the best
    step. ``best_accuracy``/``last_accuracy`` are holdout accuracies (classification
    only; None otherwise or when the best step is the last); ``test`` compares them.
    """

    best_step: int
    last_step: int
    best_val_loss: float
    last_val_loss: float
    train_loss_at_best: float | None
    gap: float | None
    stopped_early: bool
    best_accuracy: float | None = None
    last_accuracy: float | None = None
    last_unparsed: int = 0
    test: PairedTest | None = None

    def lines(self) -> list[str]:
        """The report in plain sentences, for the terminal and the HTML report."""
        text = f"best validation loss {self.best_val_loss:.3f} at step {self.best_step}"
        if self.gap is not None and self.train_loss_at_best is not None:
            text += (
                f" (train loss {self.train_loss_at_best:.3f} there: a train/val gap of "
                f"{self.gap:+.3f})"
            )
        stop = "stopped early" if self.stopped_early else "ran to the end"
        text += f"; training {stop} at step {self.last_step}, val loss {self.last_val_loss:.3f}"
        out = [text]
        if self.last_accuracy is not None and self.best_accuracy is not None and self.test:
            p = self.test.p_value
            p_text = "< 0.001" if p < 0.001 else f"= {p:.2g}"
            out.append(
                f"holdout accuracy: best checkpoint {100 * self.best_accuracy:.1f}%, last "
                f"{100 * self.last_accuracy:.1f}% (McNemar p {p_text}, "
                f"{self.test.a_only} vs {self.test.b_only} discordant answers)"
            )
        elif self.best_step == self.last_step:
            out.append("the best checkpoint is the last one")
        return out


def overfit_report(
    info: Mapping[str, Any], gold: Sequence[str], predicted: Sequence[str | None]
) -> OverfitReport | None:
    """The report from a result's ``info`` and its stored test predictions, or None.

    ``gold`` and ``predicted`` are the test split in stored order (the order the
    last checkpoint answered in). Malformed ``info`` (another version, a hand edit)
    gives None rather than an error: the rest of the summary still stands.
    """
    training = info.get("training")
    if not isinstance(training, Mapping):
        return None
    try:
        best_step, last_step = int(training["best_step"]), int(training["last_step"])
        best_val, last_val = float(training["best_val_loss"]), float(training["last_val_loss"])
        train_at = training.get("train_loss_at_best")
        train_loss = float(train_at) if isinstance(train_at, int | float) else None
    except (KeyError, TypeError, ValueError):
        return None
    report = OverfitReport(
        best_step=best_step,
        last_step=last_step,
        best_val_loss=best_val,
        last_val_loss=last_val,
        train_loss_at_best=train_loss,
        gap=None if train_loss is None else best_val - train_loss,
        stopped_early=bool(training.get("stopped_early")),
    )
    last = info.get("last_checkpoint")
    if not isinstance(last, Mapping):
        return report
    labels = last.get("predictions")
    if not isinstance(labels, list) or len(labels) != len(gold) or not gold:
        return report
    best_ok = np.array([p == g for p, g in zip(predicted, gold, strict=True)])
    last_ok = np.array([p == g for p, g in zip(labels, gold, strict=True)])
    unparsed = last.get("unparsed")
    return dataclasses.replace(
        report,
        best_accuracy=float(best_ok.mean()),
        last_accuracy=float(last_ok.mean()),
        last_unparsed=unparsed if isinstance(unparsed, int) else 0,
        test=mcnemar(best_ok, last_ok),
    )
