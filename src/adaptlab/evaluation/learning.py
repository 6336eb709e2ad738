"""Learning-curve points as measurements: which candidates learn, and each point's score.

``adaptlab curve`` (:mod:`adaptlab.engine.curves`) trains a candidate again on
growing subsets of the train split; every such point is an ordinary result in the
run store, keyed like any other, and listed under the split's fingerprint. Here a
point is scored on its stored test answers, as any candidate is. Fitting curves
through the points and finding where they cross is the decision's analysis
(:mod:`adaptlab.decide.curves`).
"""

from __future__ import annotations

from dataclasses import dataclass

from adaptlab.config import CandidateConfig
from adaptlab.evaluation.llm_costs import sane_row
from adaptlab.evaluation.scoring import Scorer
from adaptlab.store import RunStore
from adaptlab.strategies import get_strategy


@dataclass(frozen=True)
class CurvePoint:
    """One trained subset: ``size`` examples, draw ``draw``, its test quality.

    ``quality`` is the primary metric on the test split (a fraction for the percent
    metrics); ``key`` is the point's result key in the run store.
    """

    candidate: str
    size: int
    draw: int
    quality: float
    key: str


def learns_from_train(cand: CandidateConfig) -> bool:
    """Whether a candidate's quality depends on how many labelled examples it gets.

    True for a strategy that trains weights or retrieves (RAG), and for one with
    examples in its options (``k`` or ``shots`` above 0); a zero-shot prompt is flat.
    Raises what the registry raises for a strategy that is not installed.
    """
    cls = get_strategy(cand.strategy)
    options = cls.Options.model_validate(cand.params)
    if cls.trains_weights or cls.route == "rag":
        return True
    return bool(getattr(options, "k", 0) or getattr(options, "shots", 0))


def score_points(store: RunStore, fingerprint: str, scorer: Scorer) -> list[CurvePoint]:
    """The stored points of a split (its fingerprint), each scored on its test answers.

    A point whose result holds no test answers is left out.
    """
    out = []
    for name, size, draw, key in store.curve_points(fingerprint):
        rows = [sane_row(r) for r in store.predictions(key)]
        if rows:
            out.append(CurvePoint(name, size, draw, scorer.score(rows).ci.estimate, key))
    return out
