"""Each answer's score on the project's metric, for a candidate's search of its settings.

A tuned prompted candidate compares settings by these scores on the validation split
(``StrategyContext.score``): they are the per-example columns the report scores it by
(:mod:`adaptlab.evaluation.scoring`), except that a generation project graded by
``similarity`` or ``judge`` is searched by token F1, which loads and calls no model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adaptlab.evaluation.text_metrics import exact_match, extraction_metrics, token_f1

if TYPE_CHECKING:
    from adaptlab.config import ProjectConfig
    from adaptlab.core.types import Prediction
    from adaptlab.data import Example


def _object(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def answer_scores(
    cfg: ProjectConfig, preds: Sequence[Prediction], examples: Sequence[Example]
) -> tuple[str, list[float]]:
    """(the metric's name, one score in [0, 1] per answer, in order): accuracy
    (classification), field F1 (extraction), token F1 or exact match (generation)."""
    if cfg.task == "classification":
        return "accuracy", [
            float(p.label == ex.label) for p, ex in zip(preds, examples, strict=True)
        ]
    if cfg.task == "extraction":
        if not examples:
            return "field_f1", []
        golds = [_object(ex.label) or {} for ex in examples]
        m = extraction_metrics([_object(p.label) for p in preds], golds)
        return "field_f1", [float(f) for f in m.per_example_f1]
    if cfg.evaluation.generation_metric == "exact_match":
        return "exact_match", [
            exact_match(p.label, ex.label) for p, ex in zip(preds, examples, strict=True)
        ]
    return "token_f1", [token_f1(p.label, ex.label) for p, ex in zip(preds, examples, strict=True)]
