"""Everything a report shows, recomputed from the predictions in the run store.

Nothing here trusts a number written at run time except measured seconds: every
score, interval, test and cost is derived again from stored prediction rows (a
judge's grades are re-read from the response cache and parsed again; a provider
fine-tune's training bill from the tokens its job reported trained, see
:mod:`adaptlab.evaluation.llm_costs`).

Each candidate has one primary metric, the task's (see :mod:`adaptlab.evaluation.scoring`):
accuracy for classification, field F1 for extraction, ``evaluation.generation_metric``
for generation. :func:`compare` tests two candidates on the same examples: McNemar's test where
every example scores 0 or 1, else a paired bootstrap of the metric's gap.

A summary is measurements only, each record immutable once built: which candidate
wins, and why, is :mod:`adaptlab.decide` (:func:`adaptlab.decide.verdict.verdict`),
and :func:`adaptlab.engine.summarize_project` joins the two.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adaptlab.config import CostConfig, ProfileConfig, ProjectConfig
from adaptlab.core.errors import AdaptlabError
from adaptlab.core.progress import ProgressSink
from adaptlab.evaluation.cost_model import CostModel, compute_per_request_usd
from adaptlab.evaluation.hosting import hosted, server_monthly_usd
from adaptlab.evaluation.judge import JudgeStats
from adaptlab.evaluation.learning import CurvePoint, learns_from_train, score_points
from adaptlab.evaluation.llm_costs import generative_figures, sane_row, setup_cost_usd
from adaptlab.evaluation.machine import LOADED_SHARE
from adaptlab.evaluation.metrics import ClassificationMetrics
from adaptlab.evaluation.overfit import OverfitReport, overfit_report
from adaptlab.evaluation.scoring import (
    METRICS,
    GenerationSummary,
    MetricInfo,
    ScoredAnswer,
    Scorer,
    metric_stat,
    primary_metric,
)
from adaptlab.evaluation.stats import (
    Interval,
    PairedTest,
    mcnemar,
    median_ci,
    paired_bootstrap_stat,
    percentile,
)
from adaptlab.evaluation.text_metrics import ExtractionMetrics
from adaptlab.evaluation.tuning import TuningReport, tuning_report
from adaptlab.llm.prices import batch_terms
from adaptlab.store import PredictionRow, RunStore
from adaptlab.store.runs import find_run
from adaptlab.strategies import get_strategy


@dataclass(frozen=True)
class CandidateSummary:
    """One candidate of a run, measured: scores with intervals, timings and costs.

    Built once by :func:`summarize` and never changed. ``columns`` is an array of
    per-example columns (n x k) whose means give the primary metric; latencies are
    milliseconds, seconds are wall or CPU seconds as named, money is USD (``cost``
    is the :class:`~adaptlab.evaluation.cost_model.CostModel` at the project's
    prices; ``monthly_cost_usd`` at the profile's volume).
    """

    name: str
    strategy: str
    params: dict[str, Any]
    key: str
    reused: bool
    trains_weights: bool
    metric: str  # key of the primary metric, see scoring.METRICS
    quality_ci: Interval  # the primary metric and its bootstrap interval
    columns: np.ndarray  # per-example columns whose means give the metric
    n: int  # holdout answers scored
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_per_s: float
    fit_seconds: float
    fit_cpu_seconds: float
    cpu_ms_per_request: float
    cost_per_1k_usd: float
    setup_cost_usd: float  # CPU time to fit, plus a provider's training bill
    monthly_cost_usd: float
    curves: list[tuple[int, float, str, str, float]]
    info: dict[str, Any]
    # The task's detail: exactly one of these is set.
    metrics: ClassificationMetrics | None = None
    extraction: ExtractionMetrics | None = None
    generation: GenerationSummary | None = None
    macro_f1_ci: Interval | None = None  # classification
    answers: list[ScoredAnswer] = field(default_factory=list)  # lowest-scoring; not classification
    rows: list[PredictionRow] = field(default_factory=list)  # every test answer, in split order
    # Generative candidates: measured tokens, API cost and how answers parsed.
    llm: str | None = None  # "openai:gpt-4o-mini"
    input_tokens_per_request: float | None = None
    output_tokens_per_request: float | None = None
    api_cost_per_1k_usd: float | None = None  # None: no price (self-hosted or unknown)
    price_kind: str | None = None
    unparsed: int = 0  # answers no label (or valid object) could be read from
    statuses: dict[str, int] = field(default_factory=dict)
    valid_rate: float | None = None  # holdout answers that parsed (and fit the schema)
    # Inputs the provider refused, by status (filtered, too_long, error), with the first
    # few example ids of each; answers cut off at the output limit (finish_reason length).
    failed: dict[str, int] = field(default_factory=dict)
    failed_examples: dict[str, list[str]] = field(default_factory=dict)
    cut_off: int = 0
    usage_exact: bool = True  # False: some token counts were estimated or repaired
    # Consistency: the same input answered n times.
    consistency_samples: int = 0
    agreement: float | None = None  # mean share of samples that agree with the majority
    format_validity: float | None = None  # share of samples that parsed / validated
    # A fine-tuned generative model: train/val gap, best against last checkpoint.
    overfit: OverfitReport | None = None
    #: What the candidate's own search of its settings bought (tuned candidates only).
    tuning: TuningReport | None = None
    # The route (prompt, rag, finetune, finetune+rag, classical), whether it sends inputs
    # to a hosted API, and its costs (setup, per request, fixed monthly).
    route: str = "prompt"
    hosted: bool = False
    generative: bool = False
    cost: CostModel = field(default_factory=lambda: CostModel("", "self-hosted", 0.0, 0.0))
    # Validation answers: what candidates are compared and chosen on.
    val_quality_ci: Interval | None = None
    val_columns: np.ndarray | None = None
    val_n: int = 0
    selected_on: str = "val"  # "test" when a candidate of the run has no val answers
    # Cross-validation over train+val (evaluation.cv_folds; None/0/() where the candidate
    # has none): each train+val example answered once by a model fitted without it. When
    # set, it replaces val as what the candidate is chosen on (see selection_source).
    cv_quality_ci: Interval | None = None
    cv_columns: np.ndarray | None = None
    cv_n: int = 0
    cv_folds: int = 0
    # Example ids in the order of cv_columns and val_columns: what compare() pairs on.
    cv_ids: tuple[str, ...] = ()
    val_ids: tuple[str, ...] = ()
    # Measurement quality: the median latency's interval, the CPU cost's range over
    # timing passes, and the share of the machine other processes used meanwhile.
    latency_p50_ci: Interval | None = None
    cpu_ms_range: tuple[float, float] | None = None
    other_cpu_share: float | None = None

    @property
    def quality(self) -> float:
        """The primary metric's value (accuracy, field F1, token F1, …)."""
        return self.quality_ci.estimate

    @property
    def usage_estimated(self) -> bool:
        """True when the candidate's token counts, and so its cost per request, rest on
        an estimate or on a provider's figures that were repaired or doubted."""
        return self.llm is not None and not self.usage_exact

    @property
    def metric_info(self) -> MetricInfo:
        return METRICS[self.metric]

    @property
    def metric_name(self) -> str:
        return self.metric_info.name

    @property
    def scores(self) -> np.ndarray:
        """The primary metric of each example on its own (per-example F1 for extraction)."""
        return metric_stat(self.metric)(self.columns)

    @property
    def correct(self) -> np.ndarray:
        """Examples that scored full marks (for classification: answered correctly)."""
        return np.asarray(self.scores >= 1.0)

    @property
    def selection_source(self) -> str:
        """What this candidate is chosen on: "cv" (out-of-fold answers over train+val),
        "val" (the validation split) or "test" (the run chooses on test: some candidate
        has no validation answers)."""
        if self.selected_on == "val" and self.cv_quality_ci is not None:
            return "cv"
        if self.selected_on == "val" and self.val_quality_ci is not None:
            return "val"
        return "test"

    @property
    def selection_ci(self) -> Interval:
        """The primary metric on what candidates are chosen on (:attr:`selection_source`)."""
        source = self.selection_source
        if source == "cv" and self.cv_quality_ci is not None:
            return self.cv_quality_ci
        if source == "val" and self.val_quality_ci is not None:
            return self.val_quality_ci
        return self.quality_ci

    @property
    def sel_columns(self) -> np.ndarray:
        """Per-example columns (n x k) of :attr:`selection_ci`, rows in :attr:`sel_ids` order."""
        source = self.selection_source
        if source == "cv" and self.cv_columns is not None:
            return self.cv_columns
        if source == "val" and self.val_columns is not None:
            return self.val_columns
        return self.columns

    @property
    def selection_n(self) -> int:
        """Examples :attr:`selection_ci` rests on."""
        source = self.selection_source
        if source == "cv" and self.cv_n:
            return self.cv_n
        if source == "val" and self.val_n:
            return self.val_n
        return self.n

    @property
    def sel_ids(self) -> tuple[str, ...]:
        """Example ids of the rows of :attr:`sel_columns`; () when not known (a summary
        built by hand), and then :func:`compare` pairs rows by position."""
        source = self.selection_source
        if source == "cv":
            return self.cv_ids
        if source == "val":
            return self.val_ids
        return tuple(r.example_id for r in self.rows)

    @property
    def loaded_warning(self) -> str | None:
        """A sentence when other processes used much of the machine while timing this."""
        if self.other_cpu_share is None or self.other_cpu_share < LOADED_SHARE:
            return None
        return (
            f"{self.name}: other processes used {self.other_cpu_share:.0%} of the machine's "
            "CPU while it was timed, so its latency and CPU cost read high; rerun it on a "
            f"quiet machine (adaptlab run --force -c {self.name})"
        )

    @property
    def accuracy(self) -> float:
        """The primary metric under its classification name; prefer :attr:`quality`."""
        return self.quality

    @property
    def accuracy_ci(self) -> Interval:
        return self.quality_ci


@dataclass(frozen=True)
class RunSummary:
    """A run's measurements: every candidate's :class:`CandidateSummary` and the run's facts.

    ``config`` is the run's configuration as JSON (with the profile and costs it was
    summarised under), ``cfg`` the same validated; ``split`` counts examples per split;
    ``selected_on`` is the split candidates are compared on ("val", or "test" when some
    candidate has no validation answers). ``curve_points`` are ``adaptlab curve``'s
    points on the run's split, scored on test (empty: none, or not asked for), and
    ``curve_flat`` the test figure of each candidate that does not learn from the train
    split, drawn flat beside them. No verdict is in here: see
    :func:`adaptlab.decide.verdict.verdict`.
    """

    run_id: str
    project: str
    created_at: str
    labels: list[str]
    split: dict[str, int]
    model: dict[str, Any]
    candidates: Sequence[CandidateSummary]
    config: dict[str, Any]
    cfg: ProjectConfig = field(repr=False, compare=False)
    task: str = "classification"
    metric: str = "accuracy"  # the primary metric every candidate is ranked by
    judge: JudgeStats | None = None  # generation_metric 'judge': what grading took
    not_run: dict[str, str] = field(default_factory=dict)  # candidate -> why it did not run
    selected_on: str = "val"  # the split the winner is chosen on ("test": no val answers)
    curve_points: list[CurvePoint] = field(default_factory=list)
    curve_flat: dict[str, float] = field(default_factory=dict)

    @property
    def metric_info(self) -> MetricInfo:
        return METRICS[self.metric]

    @property
    def confidence(self) -> float:
        """Confidence level of the intervals."""
        return float(self.config.get("evaluation", {}).get("confidence", 0.95))

    def candidate(self, name: str) -> CandidateSummary:
        return next(c for c in self.candidates if c.name == name)


def _route(strategy: str, trains_weights: bool, params: dict[str, Any]) -> str:
    """prompt, rag, finetune, finetune+rag or classical (the engineering_hours keys)."""
    try:
        route = getattr(get_strategy(strategy), "route", "prompt")
    except Exception:  # a strategy from a plugin no longer installed
        route = "finetune" if trains_weights else "prompt"
    if params.get("context_k"):
        return "finetune+rag" if route == "finetune" else "rag"
    return str(route)


def _cost_model(
    cfg: ProjectConfig,
    name: str,
    res: Any,
    route: str,
    api_per_1k: float | None,
    n_train: int,
) -> CostModel:
    """Setup and per-request cost of one candidate (see :mod:`adaptlab.evaluation.cost_model`)."""
    cost = cfg.cost
    n = max(res.n_predictions, 1)
    cand = next((c for c in cfg.candidates if c.name == name), None)
    device = cfg.model.device
    if cand is not None and cand.llm is not None and cand.llm in cfg.llms:
        device = cfg.llms[cand.llm].device
    gpu = device.startswith("cuda")
    if api_per_1k is not None:
        # A hosted model: the bill is the tokens; the client's CPU is noise beside it.
        per_request, kind, fixed = api_per_1k / 1000, "api", 0.0
        llm = cfg.llms.get(cand.llm) if cand is not None and cand.llm is not None else None
        terms = batch_terms(llm.backend) if llm is not None else None
        if cfg.profile.answers_may_wait and terms is not None:
            per_request *= terms.share  # answers may wait: served by the batch API
    elif gpu:  # a GPU is rented whole: wall seconds per request at the served batch size
        per_request = compute_per_request_usd(res.predict_seconds / n, cost.gpu_hour_usd)
        kind, fixed = "self-hosted", cost.hosting_monthly_usd
    else:  # CPU core-seconds per request
        per_request = compute_per_request_usd(res.predict_cpu_seconds / n, cost.cpu_hour_usd)
        kind, fixed = "self-hosted", cost.hosting_monthly_usd
    if kind == "self-hosted":
        try:
            generative = bool(get_strategy(res.strategy).generative)
        except Exception:  # a strategy from a plugin no longer installed
            generative = False
        fixed += server_monthly_usd(cfg, name, route, generative)
    fit_hour = cost.gpu_hour_usd if gpu else cost.cpu_hour_usd
    fit_seconds = res.fit_seconds if gpu else res.fit_cpu_seconds
    setup = setup_cost_usd(fit_seconds, fit_hour, res.info)
    shots = res.info.get("shots")
    if route in ("finetune", "finetune+rag", "classical") or res.strategy == "rag":
        labelled = n_train
    elif isinstance(shots, list):
        labelled = len(shots)
    else:
        labelled = 0
    setup += labelled * cost.labelling_usd_per_example
    hours = sum(cost.engineering_hours.get(r, 0.0) for r in route.split("+"))  # type: ignore[call-overload]
    setup += hours * cost.engineer_hour_usd
    return CostModel(name, kind, setup, per_request, fixed)


def _cv_rows(
    store: RunStore, key: str, info: dict[str, Any], cv_folds: int, seed: int
) -> list[PredictionRow]:
    """A result's out-of-fold answers, if made with the run's folds (else none)."""
    made = info.get("cv")
    if cv_folds < 2 or not isinstance(made, dict):
        return []
    if made.get("folds") != cv_folds or made.get("seed") != seed:
        return []
    rows = [sane_row(r) for r in store.predictions(key, "cv")]
    fold = made.get("fold")
    return rows if isinstance(fold, list) and len(fold) == len(rows) else []


def _candidate(
    store: RunStore,
    link: Any,
    cfg: ProjectConfig,
    scorer: Scorer,
    n_train: int,
    cv_folds: int = 0,
) -> CandidateSummary:
    key = link["result_key"]
    res = store.result(key)
    rows: list[PredictionRow] = [sane_row(r) for r in store.predictions(key)]
    if not rows:
        raise AdaptlabError(
            f"candidate '{link['name']}' has no stored predictions",
            file=store.path,
            fix="rerun it with 'adaptlab run --force'",
        )
    scored = scorer.score(rows)
    val_rows = [sane_row(r) for r in store.predictions(key, "val")]
    val = scorer.score(val_rows) if val_rows else None
    cv_rows = _cv_rows(store, key, res.info, cv_folds, cfg.seed)
    cv = scorer.score(cv_rows) if cv_rows else None
    lat = [r.latency_ms for r in rows if r.latency_ms is not None]
    n = max(res.n_predictions, 1)
    extra = generative_figures(cfg, link["name"], rows, store.consistency(key), res.info)
    route = _route(res.strategy, res.trains_weights, res.params)
    cost = _cost_model(cfg, link["name"], res, route, extra.get("api_cost_per_1k_usd"), n_train)
    volume = cfg.profile.monthly_requests
    passes = res.info.get("cpu_ms_per_request_passes")
    load = res.info.get("machine_load")
    try:
        generative = bool(get_strategy(res.strategy).generative)
    except Exception:
        generative = res.strategy.startswith(("llm-", "openai-", "prompt"))
    return CandidateSummary(
        name=link["name"],
        strategy=res.strategy,
        params=res.params,
        key=key,
        reused=bool(link["reused"]),
        trains_weights=res.trains_weights,
        metric=scored.metric,
        quality_ci=scored.ci,
        columns=scored.columns,
        n=len(rows),
        latency_p50_ms=percentile(lat, 50),
        latency_p95_ms=percentile(lat, 95),
        throughput_per_s=res.n_predictions / res.predict_seconds if res.predict_seconds else 0.0,
        fit_seconds=res.fit_seconds,
        fit_cpu_seconds=res.fit_cpu_seconds,
        cpu_ms_per_request=res.predict_cpu_seconds / n * 1000,
        cost_per_1k_usd=cost.per_request_usd * 1000,
        setup_cost_usd=cost.setup_usd,
        monthly_cost_usd=cost.monthly_usd(volume),
        curves=store.curves(key),
        info=res.info,
        metrics=scored.metrics,
        extraction=scored.extraction,
        generation=scored.generation,
        macro_f1_ci=scored.macro_f1_ci,
        answers=scored.answers,
        rows=rows,
        overfit=overfit_report(
            res.info,
            [r.gold for r in rows] if cfg.task == "classification" else [],
            [r.predicted for r in rows],
        ),
        tuning=tuning_report(
            res.info,
            scored.ci.estimate,
            scored.metric,
            confidence=cfg.evaluation.confidence,
            resamples=cfg.evaluation.bootstrap_resamples,
            seed=cfg.seed,
        ),
        route=route,
        hosted=hosted(cfg, link["name"]),
        generative=generative,
        cost=cost,
        val_quality_ci=None if val is None else val.ci,
        val_columns=None if val is None else val.columns,
        val_n=len(val_rows),
        val_ids=tuple(r.example_id for r in val_rows),
        cv_quality_ci=None if cv is None else cv.ci,
        cv_columns=None if cv is None else cv.columns,
        cv_n=len(cv_rows),
        cv_folds=cv_folds if cv_rows else 0,
        cv_ids=tuple(r.example_id for r in cv_rows),
        latency_p50_ci=median_ci(lat, cfg.evaluation.confidence, seed=cfg.seed)
        if len(lat) >= 5
        else None,
        cpu_ms_range=(min(passes), max(passes))
        if isinstance(passes, list) and passes and all(isinstance(x, int | float) for x in passes)
        else None,
        other_cpu_share=float(load["other_cpu_share"])
        if isinstance(load, dict) and isinstance(load.get("other_cpu_share"), int | float)
        else None,
        **extra,
    )


_FAILED_WORDS = {
    "filtered": "filtered by the provider's content filter",
    "too_long": "too long for the model's context window",
    "error": "refused by the provider",
}


def answer_notes(c: CandidateSummary) -> list[str]:
    """Sentences on a candidate's refused and cut-off answers, each with its fix."""
    notes = []
    for status, n in c.failed.items():
        examples = ", ".join(c.failed_examples.get(status, []))
        more = ", …" if n > len(c.failed_examples.get(status, [])) else ""
        fix = {
            "filtered": "rephrase or remove them if they should be answerable",
            "too_long": "shorten them or use fewer examples (adaptlab data check lists them)",
            "error": "the provider's message is each one's raw answer in the report",
        }[status]
        notes.append(
            f"{c.name}: {n} of {c.n} inputs {_FAILED_WORDS[status]} ({status}: "
            f"{examples}{more}); scored wrong, the run went on; {fix}."
        )
    for note in c.info.get("answer_notes") or []:  # structured outputs refused, say
        notes.append(f"{c.name}: {note}.")
    if c.cut_off:
        notes.append(
            f"{c.name}: {c.cut_off} of {c.n} answers were cut off at the output limit "
            "(finish_reason length), which can score them wrong; raise max_tokens in the "
            "candidate's params (a reasoning model spends output tokens on hidden reasoning "
            "first)."
        )
    return notes


def p_bound(test: PairedTest, resamples: int) -> float | None:
    """The resolution of a bootstrap p-value of 0: with R resamples it only says p < 2/R."""
    if test.name == "paired-bootstrap" and test.p_value == 0:
        return 2 / resamples
    return None


def _occurrences(ids: Sequence[str]) -> list[tuple[str, int]]:
    """Each id with how many times it came before: a key that is unique even where two
    files share a name (ids are ``file-name:line``)."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        out.append((i, seen.get(i, 0)))
        seen[i] = seen.get(i, 0) + 1
    return out


def selection_pair(a: CandidateSummary, b: CandidateSummary) -> tuple[np.ndarray, np.ndarray]:
    """``a``'s and ``b``'s selection columns on the examples both were chosen on, row i
    of each the same example (in ``a``'s order).

    Paired by example id (:attr:`CandidateSummary.sel_ids`): two cross-validated
    candidates share every train+val example; a cross-validated and a validation-only
    one share the validation examples, where the first contributes its out-of-fold
    answers. Where either has no ids (a summary built by hand), rows pair by position
    as they are. Shapes: (m x k_a, m x k_b), m shared examples (0 when none).
    """
    ca, cb = a.sel_columns, b.sel_columns
    ia, ib = a.sel_ids, b.sel_ids
    if ia == ib or not ia or not ib or len(ia) != len(ca) or len(ib) != len(cb):
        return ca, cb
    where = {key: j for j, key in enumerate(_occurrences(ib))}
    pairs = [(i, where[key]) for i, key in enumerate(_occurrences(ia)) if key in where]
    rows_a = np.array([i for i, _ in pairs], dtype=int)
    rows_b = np.array([j for _, j in pairs], dtype=int)
    return ca[rows_a], cb[rows_b]


def shared_selection_n(a: CandidateSummary, b: CandidateSummary) -> int:
    """How many examples ``compare(a, b, cfg, split="selection")`` rests on."""
    return len(selection_pair(a, b)[0])


def compare(
    best: CandidateSummary, other: CandidateSummary, cfg: ProjectConfig, split: str = "test"
) -> PairedTest:
    """Paired test of ``best`` against ``other`` on the same examples (diff = best - other).

    ``split`` is "test" (the test answers, row by row) or "selection" (what each is
    chosen on, paired by example id: see :func:`selection_pair`; a cross-validated
    candidate against a validation-only one rests on the validation examples, two
    cross-validated ones on all of train+val, :func:`shared_selection_n`).
    """
    a, b = (best.columns, other.columns) if split == "test" else selection_pair(best, other)
    if best.metric_info.binary:
        stat = metric_stat(best.metric)
        return mcnemar(stat(a) >= 1.0, stat(b) >= 1.0)
    return paired_bootstrap_stat(
        a,
        b,
        metric_stat(best.metric),
        resamples=cfg.evaluation.bootstrap_resamples,
        seed=cfg.seed,
    )


def summarize(
    store: RunStore,
    run_id: str | None = None,
    *,
    llm_cache: str | Path | None = None,
    progress: ProgressSink | None = None,
    profile: ProfileConfig | None = None,
    cost: CostConfig | None = None,
    learning: bool = True,
) -> RunSummary:
    """Rebuild a run's summary from the store (the latest finished run by default).

    ``llm_cache`` is the project's response cache, where the judge's grades are kept
    (default: ``llm_cache.db`` beside the store, as in a project's ``.adaptlab``).
    ``profile`` and ``cost`` replace those the run was made with: the decision is
    weighed against the project's situation now (``adaptlab decide`` changes it
    without a rerun), while the measurements stay those of the run: the profile's
    volume prices each candidate's month. ``learning=False`` leaves out the learning
    curves (scoring every stored curve point; the winner does not depend on them),
    for commands that need only the candidates.
    """
    run = find_run(store, run_id)
    cfg = ProjectConfig.model_validate(json.loads(run["config_json"]))
    if profile is not None or cost is not None:
        cfg = cfg.model_copy(update={"profile": profile or cfg.profile, "cost": cost or cfg.cost})
    links = store.run_candidates(run["id"])
    if not links:
        raise AdaptlabError(f"run {run['id']} has no candidates", file=store.path)
    if llm_cache is not None:
        cache = Path(llm_cache)
    elif isinstance(store.path, Path):
        cache = store.path.with_name("llm_cache.db")
    else:  # a PostgreSQL store has no folder to find the project's response cache in
        raise AdaptlabError(
            "a run in a PostgreSQL store is summarised with the project's response cache",
            file=store.path,
            fix="pass llm_cache=project.llm_cache_path (summarize_project does)",
        )
    scorer = Scorer(cfg, llm_cache=cache, progress=progress)
    split = json.loads(run["split_json"])
    n_train = split.get("train", 0) + split.get("val", 0)
    # A run from before cross-validation uses none, even where its results gained some
    # later: a stored run's summary stays what it was.
    made_with = json.loads(run["config_json"]).get("evaluation", {})
    cv_folds = cfg.evaluation.cv_folds if "cv_folds" in made_with else 0
    try:
        measured = [_candidate(store, link, cfg, scorer, n_train, cv_folds) for link in links]
        points = score_points(store, run["data_fingerprint"], scorer) if learning else []
    finally:
        scorer.close()
    # Choose on validation, report on test: only when every candidate has val answers
    # (results from before adaptlab stored them, or val_size 0, fall back to test).
    selected_on = "val" if all(c.val_n for c in measured) else "test"
    cands = [dataclasses.replace(c, selected_on=selected_on) for c in measured]
    return RunSummary(
        run_id=run["id"],
        project=run["project"],
        created_at=run["created_at"],
        labels=list(cfg.labels),
        split=split,
        model=json.loads(run["model_json"]),
        candidates=cands,
        config=cfg.model_dump(mode="json"),
        cfg=cfg,
        task=cfg.task,
        metric=primary_metric(cfg),
        judge=scorer.judge_stats,
        not_run=json.loads(run["notes_json"] or "{}").get("not_run", {}),
        selected_on=selected_on,
        curve_points=points,
        curve_flat=_flat(points, cands, cfg),
    )


def _flat(
    points: list[CurvePoint], cands: list[CandidateSummary], cfg: ProjectConfig
) -> dict[str, float]:
    """The test figure of each candidate that does not learn from the train split (drawn
    flat beside the learning curves); empty when there are no curve points."""
    if not points:
        return {}
    configs = {c.name: c for c in cfg.candidates}
    return {
        c.name: c.quality
        for c in cands
        if c.name in configs and not learns_from_train(configs[c.name])
    }
