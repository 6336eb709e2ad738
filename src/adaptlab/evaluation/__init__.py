"""Metrics, confidence intervals and paired significance tests."""

from __future__ import annotations

from adaptlab.evaluation.metrics import (
    ClassificationMetrics,
    ClassMetrics,
    accuracy,
    accuracy_codes,
    classification_metrics,
    encode,
    macro_f1,
    macro_f1_codes,
)
from adaptlab.evaluation.stats import (
    METRICS,
    Interval,
    PairedTest,
    bootstrap_ci,
    mcnemar,
    paired_bootstrap,
    percentile,
)

__all__ = [
    "METRICS",
    "ClassMetrics",
    "ClassificationMetrics",
    "Interval",
    "PairedTest",
    "accuracy",
    "accuracy_codes",
    "bootstrap_ci",
    "classification_metrics",
    "encode",
    "macro_f1",
    "macro_f1_codes",
    "mcnemar",
    "paired_bootstrap",
    "percentile",
]
