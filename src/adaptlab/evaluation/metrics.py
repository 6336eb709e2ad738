"""Classification metrics over string labels, plus integer-coded fast paths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Code given to a prediction that is None or not one of the labels.
UNPARSED = -1


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall, F1 and gold support of one class."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationMetrics:
    """Full metric set for one run; confusion[i][j] counts gold labels[i] predicted labels[j].

    The counts are kept sparse (``confusion_counts``, nonzero cells only): with 10,000
    labels the dense matrix has 10^8 cells, almost all zero.
    """

    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    confusion_counts: dict[tuple[int, int], int]
    labels: list[str]
    n: int
    unparsed: int

    @property
    def confusion(self) -> list[list[int]]:
        """The dense matrix; build it only for a few labels."""
        k = len(self.labels)
        dense = [[0] * k for _ in range(k)]
        for (i, j), v in self.confusion_counts.items():
            dense[i][j] = v
        return dense


def _check_lengths(gold: Sequence[object], pred: Sequence[object]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items but pred has {len(pred)}")
    if len(gold) == 0:
        raise ValueError("cannot score an empty set of predictions")


def _label_index(labels: Sequence[str]) -> dict[str, int]:
    if len(labels) == 0:
        raise ValueError("labels must not be empty")
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be unique")
    return index


def encode(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> tuple[IntArray, IntArray]:
    """Map gold and predicted labels to indices into `labels`; unparsed predictions become -1."""
    _check_lengths(gold, pred)
    index = _label_index(labels)
    unknown = sorted({g for g in gold if g not in index})
    if unknown:
        raise ValueError(f"gold labels not in labels: {unknown}")
    g = np.fromiter((index[x] for x in gold), dtype=np.int64, count=len(gold))
    p = np.fromiter(
        (UNPARSED if x is None else index.get(x, UNPARSED) for x in pred),
        dtype=np.int64,
        count=len(pred),
    )
    return g, p


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den with 0.0 where den == 0 (sklearn's zero_division=0)."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _f1_from_counts(tp: FloatArray, n_pred: FloatArray, support: FloatArray) -> FloatArray:
    # 2tp / (2tp + fp + fn) equals the harmonic mean of precision and recall, and is 0 exactly
    # when p + r == 0, so it needs no separate zero check.
    return _safe_div(2.0 * tp, n_pred + support)


def _macro_f1_from_counts(tp: FloatArray, n_pred: FloatArray, support: FloatArray) -> FloatArray:
    """Macro F1 over the last axis (one class per column)."""
    result: FloatArray = _f1_from_counts(tp, n_pred, support).mean(axis=-1)
    return result


def _check_codes(g: IntArray, p: IntArray, n_labels: int) -> None:
    if g.ndim != 1 or p.ndim != 1:
        raise ValueError("codes must be one-dimensional")
    if g.shape != p.shape:
        raise ValueError(f"gold has {g.size} codes but pred has {p.size}")
    if g.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    if n_labels < 1:
        raise ValueError("n_labels must be at least 1")
    if g.min() < 0 or g.max() >= n_labels:
        raise ValueError("gold codes must lie in [0, n_labels)")
    if p.min() < UNPARSED or p.max() >= n_labels:
        raise ValueError("pred codes must lie in [-1, n_labels)")


def _counts(g: IntArray, p: IntArray, n_labels: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    tp = np.bincount(g[g == p], minlength=n_labels).astype(np.float64)
    n_pred = np.bincount(p[p >= 0], minlength=n_labels).astype(np.float64)
    support = np.bincount(g, minlength=n_labels).astype(np.float64)
    return tp, n_pred, support


def accuracy_codes(g: IntArray, p: IntArray) -> float:
    """Share of positions where the codes agree; -1 never matches a gold code."""
    if g.shape != p.shape:
        raise ValueError(f"gold has {g.size} codes but pred has {p.size}")
    if g.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    return float(np.mean(g == p))


def macro_f1_codes(g: IntArray, p: IntArray, n_labels: int) -> float:
    """Unweighted mean F1 over all n_labels classes, zero-support classes included."""
    _check_codes(g, p, n_labels)
    return float(_macro_f1_from_counts(*_counts(g, p, n_labels)))


def accuracy(gold: Sequence[str], pred: Sequence[str | None]) -> float:
    """Share of predictions equal to the gold label."""
    _check_lengths(gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)


def macro_f1(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> float:
    """Macro F1 over `labels`, matching sklearn's f1_score(average='macro', zero_division=0)."""
    g, p = encode(gold, pred, labels)
    return macro_f1_codes(g, p, len(labels))


def classification_metrics(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> ClassificationMetrics:
    """Accuracy, macro F1, per-class scores and confusion matrix for one set of predictions."""
    g, p = encode(gold, pred, labels)
    n_labels = len(labels)
    tp, n_pred, support = _counts(g, p, n_labels)
    precision = _safe_div(tp, n_pred)
    recall = _safe_div(tp, support)
    f1 = _f1_from_counts(tp, n_pred, support)

    parsed = p >= 0
    # Unparsed predictions have no column, so they only show up as missing mass in their row.
    cells, counts = np.unique(g[parsed] * n_labels + p[parsed], return_counts=True)
    confusion = {
        (int(c) // n_labels, int(c) % n_labels): int(v) for c, v in zip(cells, counts, strict=True)
    }

    per_class = {
        label: ClassMetrics(
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
            support=int(support[i]),
        )
        for i, label in enumerate(labels)
    }
    return ClassificationMetrics(
        accuracy=accuracy_codes(g, p),
        macro_f1=float(f1.mean()),
        per_class=per_class,
        confusion_counts=confusion,
        labels=list(labels),
        n=int(g.size),
        unparsed=int(np.count_nonzero(~parsed)),
    )
