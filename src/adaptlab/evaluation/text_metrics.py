"""Metrics for generative tasks: short answers, JSON extraction and free text.

* Short answers: SQuAD v1.1 exact match and token F1 (:func:`exact_match`, :func:`token_f1`).
* Extraction: field-level precision/recall/F1 of a JSON object against the gold object
  (:func:`field_scores`, :func:`extraction_metrics`), and schema checks of a model answer
  (:func:`validate_json`, which also digs the JSON out of fences and prose).
* Free text: cosine similarity of embeddings (:func:`embedding_similarity`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from adaptlab.data.json_fields import (
    FieldValue,
    Scalar,
    field_group,
    flatten_fields,
)

FloatArray = npt.NDArray[np.float64]

# ------------------------------------------------------------------ short answers

_ASCII_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation, drop a/an/the, collapse spaces.

    Punctuation is ASCII ``string.punctuation`` (as in the official script) plus every
    Unicode punctuation character (category P*, e.g. German „…“ quotes), so ASCII text
    normalises exactly as the official script does. Articles are English only.
    """
    s = s.lower()
    s = "".join(ch for ch in s if not _is_punct(ch))
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    golds = [gold] if isinstance(gold, str) else list(gold)
    if not golds:
        raise ValueError("gold must be a string or a non-empty list of strings")
    return golds


def exact_match(pred: str | None, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer, else 0.0.

    ``gold`` may list several acceptable answers (the best one counts, as in SQuAD);
    a ``None`` prediction (nothing parsed) is scored as the empty string.
    """
    p = normalize_answer(pred or "")
    return float(any(p == normalize_answer(g) for g in _golds(gold)))


def _f1_tokens(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str | None, gold: str | Sequence[str]) -> float:
    """SQuAD token-overlap F1 of the normalised answers; both empty gives 1.0.

    With several gold answers the best F1 counts; ``None`` is scored as the empty string.
    """
    p = normalize_answer(pred or "").split()
    return max(_f1_tokens(p, normalize_answer(g).split()) for g in _golds(gold))


# ------------------------------------------------------------------ extraction


def _canon(x: Scalar) -> tuple[str, object] | None:
    """Comparison key of a scalar; None means "no value".

    None and whitespace-only strings are no value. Strings compare after
    :func:`normalize_answer`; numbers compare numerically (1 == 1.0, to 12 significant
    digits); booleans only equal booleans. A string never equals a number ("42" != 42):
    a wrong type is a wrong value (the schema check reports it separately).
    """
    if x is None:
        return None
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int | float):
        return ("num", float(f"{float(x):.12g}"))
    if not x.strip():
        return None
    return ("str", normalize_answer(x))


def _as_multiset(value: FieldValue) -> Counter[tuple[str, object]]:
    items = value if isinstance(value, list) else [value]
    return Counter(k for k in (_canon(v) for v in items) if k is not None)


@dataclass(frozen=True)
class Counts:
    """True positives, false positives and false negatives of one field (or a sum)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """tp / (tp + fp); 1.0 when nothing was predicted and nothing was expected."""
        return _ratio(self.tp, self.tp + self.fp, empty=self.fn == 0)

    @property
    def recall(self) -> float:
        """tp / (tp + fn); 1.0 when nothing was expected and nothing was predicted."""
        return _ratio(self.tp, self.tp + self.fn, empty=self.fp == 0)

    @property
    def f1(self) -> float:
        """2tp / (2tp + fp + fn); 1.0 when there are no counts at all (both empty)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, empty=True)


def _ratio(num: int, den: int, *, empty: bool) -> float:
    if den == 0:
        return 1.0 if empty else 0.0
    return num / den


@dataclass(frozen=True)
class FieldCounts:
    """Counts per field path of one prediction; ``parsed`` is False for a None prediction."""

    fields: dict[str, Counts]
    parsed: bool

    @property
    def total(self) -> Counts:
        return sum(self.fields.values(), Counts())

    @property
    def f1(self) -> float:
        """Micro F1 over this example's fields (1.0 when gold and prediction are both empty)."""
        return self.total.f1


def field_scores(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> FieldCounts:
    """Compare a predicted object with the gold object, field by field.

    For each path (see :func:`flatten_fields`), values are compared as multisets of
    comparison keys (a scalar is a multiset of one): matched items are tp, extra
    predicted items fp, missing gold items fn. So a wrong value counts as one fp and
    one fn; a gold value with the field missing or null in the prediction is one fn; a
    predicted value where gold is null or missing is one fp; null/missing on both sides
    counts nothing. A ``None`` prediction (unparseable answer), or one that is not an
    object, counts every gold value as fn.
    """
    gold_flat = flatten_fields(gold)
    parsed = isinstance(pred, Mapping)
    pred_flat = flatten_fields(pred) if isinstance(pred, Mapping) else {}
    fields: dict[str, Counts] = {}
    for path in sorted(gold_flat.keys() | pred_flat.keys()):
        g = _as_multiset(gold_flat.get(path))
        p = _as_multiset(pred_flat.get(path))
        tp = sum((g & p).values())
        counts = Counts(tp, p.total() - tp, g.total() - tp)
        if counts != Counts():
            fields[path] = counts
    return FieldCounts(fields=fields, parsed=parsed)


@dataclass(frozen=True)
class FieldMetrics:
    """Precision, recall and F1 of one field over a dataset; support = gold values."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ExtractionMetrics:
    """Micro scores over all fields of all examples, per-field scores and per-example F1."""

    precision: float
    recall: float
    f1: float
    per_field: dict[str, FieldMetrics]
    per_example_f1: list[float]
    n: int
    unparsed: int  # answers holding no JSON object: every gold field counts as missed
    per_example_counts: tuple[Counts, ...] = ()  # summed over fields; for micro-F1 bootstraps


def extraction_metrics(
    preds: Sequence[Mapping[str, Any] | None], golds: Sequence[Mapping[str, Any]]
) -> ExtractionMetrics:
    """Aggregate :func:`field_scores` over a dataset.

    Micro precision/recall/F1 sum the counts of every field of every example; per-field
    scores group paths by :func:`field_group`; ``per_example_f1`` feeds bootstrap CIs.
    """
    if len(preds) != len(golds):
        raise ValueError(f"gold has {len(golds)} items but pred has {len(preds)}")
    if not golds:
        raise ValueError("cannot score an empty set of predictions")
    total = Counts()
    groups: dict[str, Counts] = {}
    per_example: list[float] = []
    per_example_counts: list[Counts] = []
    unparsed = 0
    for pred, gold in zip(preds, golds, strict=True):
        scores = field_scores(pred, gold)
        unparsed += not scores.parsed
        per_example.append(scores.f1)
        per_example_counts.append(scores.total)
        for path, counts in scores.fields.items():
            key = field_group(path)
            groups[key] = groups.get(key, Counts()) + counts
            total = total + counts
    per_field = {
        key: FieldMetrics(c.precision, c.recall, c.f1, c.tp + c.fn)
        for key, c in sorted(groups.items())
    }
    return ExtractionMetrics(
        precision=total.precision,
        recall=total.recall,
        f1=total.f1,
        per_field=per_field,
        per_example_f1=per_example,
        n=len(golds),
        unparsed=unparsed,
        per_example_counts=tuple(per_example_counts),
    )


# ------------------------------------------------------------------ free text


def embedding_similarity(
    preds: Sequence[str | None],
    golds: Sequence[str],
    embed: Callable[[list[str]], npt.NDArray[Any]],
) -> FloatArray:
    """Cosine similarity of each (prediction, gold) pair, clipped to [-1, 1].

    ``embed`` gets every non-empty text in one call (predictions first, then golds) and
    returns one row per text; rows are re-normalised here, so unnormalised rows also
    work. Empty or whitespace-only texts (and None predictions) are not embedded: a pair
    with both sides empty scores 1.0, with one side empty 0.0.
    """
    if len(preds) != len(golds):
        raise ValueError(f"gold has {len(golds)} items but pred has {len(preds)}")
    p_texts = [p or "" for p in preds]
    p_ok = np.array([bool(t.strip()) for t in p_texts], dtype=bool)
    g_ok = np.array([bool(t.strip()) for t in golds], dtype=bool)
    texts = [t for t, ok in zip(p_texts, p_ok, strict=True) if ok]
    texts += [t for t, ok in zip(golds, g_ok, strict=True) if ok]
    out: FloatArray = (~p_ok & ~g_ok).astype(np.float64)  # both empty: 1.0; one empty: 0.0
    if not texts:
        return out
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"embed returned shape {vectors.shape} for {len(texts)} texts")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    n_p = int(p_ok.sum())
    p_vec = np.zeros((len(golds), vectors.shape[1]), dtype=np.float64)
    g_vec = np.zeros_like(p_vec)
    p_vec[p_ok] = vectors[:n_p]
    g_vec[g_ok] = vectors[n_p:]
    both = p_ok & g_ok
    out[both] = np.clip(np.einsum("ij,ij->i", p_vec[both], g_vec[both]), -1.0, 1.0)
    return out
