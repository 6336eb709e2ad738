"""The quality of one candidate's stored answers, for each task type.

Every task gives a candidate the same things: a primary metric, per-example columns
whose means determine that metric (so one bootstrap and one paired test serve every
task), and the task's own detail:

* classification: accuracy; the columns are 1/0 per correct answer; detail is the
  full :class:`ClassificationMetrics` (macro F1, per class, confusion matrix);
* extraction: field-level micro F1; the columns are each example's tp/fp/fn counts
  (so the bootstrap resamples examples and recomputes the micro F1, not a mean of
  per-example F1s); detail is precision, recall and per-field scores;
* generation: ``evaluation.generation_metric`` (token F1, exact match, embedding
  similarity or an LLM judge's grade); one column of per-example scores; token F1
  and exact match are always reported beside it.

Only stored prediction rows go in; an encoder (similarity) or the judge model are
loaded only when the chosen metric needs them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptlab.backends import EncoderBackend, load_backend
from adaptlab.core.errors import ConfigError
from adaptlab.evaluation.judge import Judge
from adaptlab.evaluation.metrics import ClassificationMetrics, classification_metrics, encode
from adaptlab.evaluation.stats import (
    Interval,
    Statistic,
    bootstrap_ci,
    bootstrap_stat_ci,
    mean_stat,
    micro_f1_stat,
)
from adaptlab.evaluation.text_metrics import (
    ExtractionMetrics,
    embedding_similarity,
    exact_match,
    extraction_metrics,
    token_f1,
)
from adaptlab.rag.context import check_citations, passages_from_json, sources_from_json

if TYPE_CHECKING:
    from adaptlab.backends.base import EncoderBackend
    from adaptlab.config import ProjectConfig
    from adaptlab.core.progress import ProgressSink
    from adaptlab.evaluation.judge import JudgeStats
    from adaptlab.store import PredictionRow

#: Statuses of answers that could not be read (no label, no JSON, no "Answer:") or
#: that broke the schema; they are scored, never dropped.
INVALID = ("unparsed", "invalid")
#: Statuses of inputs the provider refused (a content filter, too long for the context
#: window, another error about that input): no answer, scored wrong, counted apart.
FAILED = ("filtered", "too_long", "error")
ANSWERS_SHOWN = 8  # lowest-scoring answers kept for the report


@dataclass(frozen=True)
class MetricInfo:
    """How a primary metric is named, compared and shown."""

    key: str
    name: str  # in tables and reasons: "accuracy", "field F1", …
    binary: bool  # every example scores 0 or 1: McNemar compares two candidates
    percent: bool = True  # shown as a percentage (similarity is a cosine)

    def fmt(self, x: float) -> str:
        return f"{100 * x:.1f}%" if self.percent else f"{x:.3f}"


METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("accuracy", "accuracy", binary=True),
        MetricInfo("field_f1", "field F1", binary=False),
        MetricInfo("token_f1", "token F1", binary=False),
        MetricInfo("exact_match", "exact match", binary=True),
        MetricInfo("similarity", "similarity", binary=False, percent=False),
        MetricInfo("judge", "judge score", binary=False),
    )
}


def primary_metric(cfg: ProjectConfig) -> str:
    if cfg.task == "classification":
        return "accuracy"
    if cfg.task == "extraction":
        return "field_f1"
    return cfg.evaluation.generation_metric


def metric_stat(metric: str) -> Statistic:
    """What turns a resample's column means into the metric."""
    return micro_f1_stat if metric == "field_f1" else mean_stat


@dataclass(frozen=True)
class RetrievalStats:
    """What the passages of a RAG candidate's prompts did (see :mod:`adaptlab.rag.context`).

    ``cited`` counts answers with at least one valid citation among ``citable``
    answers: those whose example names supporting documents (``data.sources_field``),
    or all answers when the data names none; ``invalid`` counts cited ids that were
    not among the passages shown, ``unsupported`` valid citations whose passage
    shares under half of the answer's content words. ``recall`` is the mean share of
    an example's supporting documents found among its passages (recall@k, k =
    passages per prompt), over examples that name any; None when none do.
    """

    answers: int
    citable: int
    cited: int
    invalid: int
    unsupported: int
    groundedness: float
    recall: float | None
    k: int
    screened: int  # passage sentences withheld as instructions to the model

    @property
    def citation_rate(self) -> float:
        return self.cited / self.citable if self.citable else 0.0


def retrieval_stats(rows: Sequence[PredictionRow]) -> RetrievalStats | None:
    """Citation, groundedness and recall figures of a candidate's answers, or None
    when its prompts held no passages (a closed-book candidate)."""

    if not rows or all(r.context_json is None for r in rows):
        return None
    named = any(sources_from_json(r.sources_json) for r in rows)
    citable = cited = invalid = unsupported = screened = k = 0
    grounded: list[float] = []
    recalls: list[float] = []
    for r in rows:
        passages = passages_from_json(r.context_json) or []
        k = max(k, len(passages))
        screened += sum(p.removed for p in passages)
        sources = sources_from_json(r.sources_json)
        check = check_citations(r.raw or "", passages)
        invalid += len(check.invalid)
        unsupported += len(check.unsupported)
        grounded.append(check.groundedness)
        if not named or sources:
            citable += 1
            cited += check.has_valid
        if sources:
            found = {p.doc_id for p in passages}
            recalls.append(len(found & set(sources)) / len(set(sources)))
    return RetrievalStats(
        answers=len(rows),
        citable=citable,
        cited=cited,
        invalid=invalid,
        unsupported=unsupported,
        groundedness=float(np.mean(grounded)),
        recall=float(np.mean(recalls)) if recalls else None,
        k=k,
        screened=screened,
    )


@dataclass(frozen=True)
class GenerationSummary:
    """Text scores reported beside the primary metric of a generation task."""

    token_f1: float
    exact_match: float
    judge_unparsed: int = 0  # judge replies with no readable score (scored 0)
    retrieval: RetrievalStats | None = None  # RAG candidates only


@dataclass(frozen=True)
class ScoredAnswer:
    """One answer beside its reference, for the report."""

    example_id: str
    input: str
    reference: str
    answer: str | None
    score: float
    status: str | None
    raw: str | None = None
    context_json: str | None = None  # RAG: the passages the prompt held


@dataclass
class TaskScores:
    metric: str
    columns: np.ndarray  # examples x columns; their means give the metric (see metric_stat)
    ci: Interval  # the metric with its bootstrap interval
    metrics: ClassificationMetrics | None = None
    macro_f1_ci: Interval | None = None
    extraction: ExtractionMetrics | None = None
    generation: GenerationSummary | None = None
    answers: list[ScoredAnswer] = field(default_factory=list)


class Scorer:
    """Scores candidates of one run; holds the encoder or judge the metric needs."""

    def __init__(
        self,
        cfg: ProjectConfig,
        *,
        llm_cache: Path,
        progress: ProgressSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.metric = primary_metric(cfg)
        self.llm_cache = llm_cache
        self.progress = progress
        self._encoder: EncoderBackend | None = None
        self._judge: Judge | None = None

    @property
    def judge_stats(self) -> JudgeStats | None:
        return self._judge.stats if self._judge is not None else None

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()

    def _bootstrap(self, columns: np.ndarray) -> Interval:
        ev = self.cfg.evaluation
        return bootstrap_stat_ci(
            columns,
            metric_stat(self.metric),
            resamples=ev.bootstrap_resamples,
            confidence=ev.confidence,
            seed=self.cfg.seed,
        )

    def score(self, rows: Sequence[PredictionRow]) -> TaskScores:
        if self.cfg.task == "classification":
            return self._classification(rows)
        if self.cfg.task == "extraction":
            return self._extraction(rows)
        return self._generation(rows)

    # ---------------------------------------------------------------- tasks

    def _classification(self, rows: Sequence[PredictionRow]) -> TaskScores:
        labels = list(self.cfg.labels)
        gold = [r.gold for r in rows]
        pred = [r.predicted for r in rows]
        g, p = encode(gold, pred, labels)
        ev = self.cfg.evaluation
        ci = {
            m: bootstrap_ci(
                g,
                p,
                len(labels),
                metric=m,
                resamples=ev.bootstrap_resamples,
                confidence=ev.confidence,
                seed=self.cfg.seed,
            )
            for m in ("accuracy", "macro_f1")
        }
        return TaskScores(
            metric="accuracy",
            columns=(g == p).astype(np.float64)[:, None],
            ci=ci["accuracy"],
            metrics=classification_metrics(gold, pred, labels),
            macro_f1_ci=ci["macro_f1"],
        )

    def _extraction(self, rows: Sequence[PredictionRow]) -> TaskScores:
        golds = [json.loads(r.gold) for r in rows]
        preds = [_json_object(r.predicted) for r in rows]
        m = extraction_metrics(preds, golds)
        columns = np.array(
            [[c.tp, c.fp, c.fn] for c in m.per_example_counts], dtype=np.float64
        ).reshape(len(rows), 3)
        return TaskScores(
            metric="field_f1",
            columns=columns,
            ci=self._bootstrap(columns),
            extraction=m,
            answers=_lowest(rows, m.per_example_f1),
        )

    def _generation(self, rows: Sequence[PredictionRow]) -> TaskScores:
        golds = [r.gold for r in rows]
        preds = [r.predicted for r in rows]
        f1 = [token_f1(p, g) for p, g in zip(preds, golds, strict=True)]
        em = [exact_match(p, g) for p, g in zip(preds, golds, strict=True)]
        judge_unparsed = 0
        if self.metric == "token_f1":
            scores = np.array(f1, dtype=np.float64)
        elif self.metric == "exact_match":
            scores = np.array(em, dtype=np.float64)
        elif self.metric == "similarity":
            scores = embedding_similarity(preds, golds, self._embed)
        else:
            scores, judge_unparsed = self._grade(rows)
        columns = scores[:, None]
        return TaskScores(
            metric=self.metric,
            columns=columns,
            ci=self._bootstrap(columns),
            generation=GenerationSummary(
                token_f1=float(np.mean(f1)),
                exact_match=float(np.mean(em)),
                judge_unparsed=judge_unparsed,
                retrieval=retrieval_stats(rows),
            ),
            answers=_lowest(rows, list(scores)),
        )

    # ---------------------------------------------------------------- models

    def _embed(self, texts: list[str]) -> Any:
        if self._encoder is None:
            backend = load_backend(self.cfg.model)
            if not isinstance(backend, EncoderBackend):
                raise ConfigError(
                    f"generation_metric 'similarity' needs an encoder, and backend "
                    f"'{self.cfg.model.backend}' under 'model:' is none",
                    fix="set model.backend: sentence-transformers (the bundled encoder)",
                )
            self._encoder = backend
        return self._encoder.embed(texts)

    def _grade(self, rows: Sequence[PredictionRow]) -> tuple[np.ndarray, int]:
        """Judge scores; an empty or unread answer scores 0 without asking the judge."""
        if self._judge is None:
            ev = self.cfg.evaluation
            name = ev.judge_llm
            assert name is not None and name in self.cfg.llms  # load_config checks both
            self._judge = Judge(
                name,
                self.cfg.llms[name],
                rubric=ev.judge_rubric,
                seed=self.cfg.seed,
                cache_path=self.llm_cache,
                progress=self.progress,
            )
        asked = [i for i, r in enumerate(rows) if r.predicted and r.predicted.strip()]
        grades = self._judge.grade(
            [(rows[i].input, rows[i].gold, rows[i].predicted or "") for i in asked]
        )
        scores = np.zeros(len(rows), dtype=np.float64)
        for i, grade in zip(asked, grades, strict=True):
            scores[i] = grade or 0.0
        return scores, sum(g is None for g in grades)


def _json_object(text: str | None) -> dict[str, Any] | None:
    """A stored extraction answer (canonical JSON) as an object; None if it holds none."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _lowest(rows: Sequence[PredictionRow], scores: Sequence[float]) -> list[ScoredAnswer]:
    order = sorted(range(len(rows)), key=lambda i: (scores[i], i))[:ANSWERS_SHOWN]
    return [
        ScoredAnswer(
            rows[i].example_id,
            rows[i].input,
            rows[i].gold,
            rows[i].predicted,
            float(scores[i]),
            rows[i].status,
            rows[i].raw,
            rows[i].context_json,
        )
        for i in order
    ]
