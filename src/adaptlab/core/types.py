"""The records every layer passes around: a prediction and a training-curve point."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    """A predicted label (None when no label could be read) and its confidence.

    Generative strategies also keep the model's raw answer, how it was parsed
    (``status``: exact, normalised, fuzzy, json, unparsed, invalid; or filtered,
    too_long, error when the provider refused that input) and the call's token usage,
    latency and finish reason.
    """

    label: str | None
    score: float
    raw: str | None = None
    status: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    tokens_exact: bool | None = None  # False: the provider reported no usage, counts estimated
    latency_ms: float | None = None
    finish_reason: str | None = None  # the provider's (stop, length, content_filter, …)
    #: RAG: the passages the prompt held, as JSON (:func:`adaptlab.rag.context.passages_json`).
    context: str | None = None


@dataclass(frozen=True)
class CurvePoint:
    """One point of a training curve: ``split`` is 'train' or 'val'."""

    step: int
    epoch: float
    split: str
    metric: str
    value: float
