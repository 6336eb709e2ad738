"""Everything a report shows, recomputed from the predictions in the run store.

Nothing here trusts a number written at run time except measured seconds: every
score, interval, test and cost is derived again from stored prediction rows (a
judge's grades are re-read from the response cache and parsed again; a provider
fine-tune's training bill from the tokens its job reported trained, see
:mod:`adaptlab.evaluation.llm_costs`).

Each candidate has one primary metric, the task's (see :mod:`adaptlab.evaluation.scoring`):
accuracy for classification, field F1 for extraction, ``evaluation.generation_metric``
for generation. "vs best" compares per-example scores on the same examples: McNemar's
test where every example scores 0 or 1, else a paired bootstrap of the metric's gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptlab.config import ProjectConfig
from adaptlab.data.validate import MIN_FINETUNE_EXAMPLES, MIN_FINETUNE_EXAMPLES_GOOD, SWEET_SPOT
from adaptlab.errors import AdaptlabError
from adaptlab.evaluation.judge import JudgeStats
from adaptlab.evaluation.llm_costs import generative_figures, sane_row, setup_cost_usd
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
    paired_bootstrap_stat,
    percentile,
)
from adaptlab.evaluation.text_metrics import ExtractionMetrics
from adaptlab.store import PredictionRow, RunStore

if TYPE_CHECKING:
    from adaptlab.strategies.base import ProgressSink

HIGH_VOLUME = 100_000  # requests/month where the seeds' rule of thumb flips to fine-tuning


@dataclass
class CandidateSummary:
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
    vs_best: PairedTest | None = None
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

    @property
    def quality(self) -> float:
        """The primary metric's value (accuracy, field F1, token F1, …)."""
        return self.quality_ci.estimate

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
    def accuracy(self) -> float:
        """The primary metric under its classification name; prefer :attr:`quality`."""
        return self.quality

    @property
    def accuracy_ci(self) -> Interval:
        return self.quality_ci


@dataclass
class BreakEven:
    """Where ``candidate`` (more setup, cheaper per request) overtakes ``baseline``."""

    candidate: str
    baseline: str
    requests: float | None  # None: never, the candidate is not cheaper per request
    monthly_volume: float | None
    horizon_months: int


@dataclass
class Recommendation:
    winner: str
    kind: str  # "significant", "cheapest-within-noise" or "only-candidate"
    reasons: list[str]
    rules: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    run_id: str
    project: str
    created_at: str
    labels: list[str]
    split: dict[str, int]
    model: dict[str, Any]
    candidates: list[CandidateSummary]
    best: str
    recommendation: Recommendation
    break_even: list[BreakEven]
    config: dict[str, Any]
    task: str = "classification"
    metric: str = "accuracy"  # the primary metric every candidate is ranked by
    judge: JudgeStats | None = None  # generation_metric 'judge': what grading took
    not_run: dict[str, str] = field(default_factory=dict)  # candidate -> why it did not run

    @property
    def metric_info(self) -> MetricInfo:
        return METRICS[self.metric]

    @property
    def confidence(self) -> float:
        """Confidence level of the intervals."""
        return float(self.config.get("evaluation", {}).get("confidence", 0.95))

    def candidate(self, name: str) -> CandidateSummary:
        return next(c for c in self.candidates if c.name == name)


def pct(x: float) -> str:
    """Percent with one decimal: the one format of reasons, report and plots."""
    return f"{100 * x:.1f}%"


def _usd(x: float) -> str:
    return f"{x:.3g}"


def _candidate(store: RunStore, link: Any, cfg: ProjectConfig, scorer: Scorer) -> CandidateSummary:
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
    lat = [r.latency_ms for r in rows if r.latency_ms is not None]
    n = max(res.n_predictions, 1)
    cpu_per_req = res.predict_cpu_seconds / n
    price = cfg.cost.cpu_hour_usd / 3600
    per_1k = cpu_per_req * 1000 * price
    # A provider fine-tune adds its training bill; a local one's cost is its CPU time.
    setup = setup_cost_usd(res.fit_cpu_seconds, cfg.cost.cpu_hour_usd, res.info)
    extra = generative_figures(cfg, link["name"], rows, store.consistency(key), res.info)
    if extra.get("api_cost_per_1k_usd") is not None:
        # A hosted model: the bill is the tokens; the client's CPU is noise beside it.
        per_1k = extra["api_cost_per_1k_usd"]
    monthly = cfg.cost.monthly_requests * per_1k / 1000
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
        cpu_ms_per_request=cpu_per_req * 1000,
        cost_per_1k_usd=per_1k,
        setup_cost_usd=setup,
        monthly_cost_usd=monthly,
        curves=store.curves(key),
        info=res.info,
        metrics=scored.metrics,
        extraction=scored.extraction,
        generation=scored.generation,
        macro_f1_ci=scored.macro_f1_ci,
        answers=scored.answers,
        overfit=overfit_report(
            res.info,
            [r.gold for r in rows] if cfg.task == "classification" else [],
            [r.predicted for r in rows],
        ),
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
    if c.cut_off:
        notes.append(
            f"{c.name}: {c.cut_off} of {c.n} answers were cut off at the output limit "
            "(finish_reason length), which can score them wrong; raise max_tokens in the "
            "candidate's params (a reasoning model spends output tokens on hidden reasoning "
            "first)."
        )
    return notes


def break_even(
    candidates: list[CandidateSummary], baseline: CandidateSummary, horizon_months: int
) -> list[BreakEven]:
    out = []
    for c in candidates:
        if c is baseline or c.setup_cost_usd <= baseline.setup_cost_usd:
            continue
        saving = (baseline.cost_per_1k_usd - c.cost_per_1k_usd) / 1000
        if saving <= 0:
            out.append(BreakEven(c.name, baseline.name, None, None, horizon_months))
            continue
        requests = (c.setup_cost_usd - baseline.setup_cost_usd) / saving
        out.append(
            BreakEven(c.name, baseline.name, requests, requests / horizon_months, horizon_months)
        )
    return out


def _data_rule(n_train: int) -> str:
    lo, hi = SWEET_SPOT
    if n_train < MIN_FINETUNE_EXAMPLES:
        return (
            f"{n_train} training examples is below the {MIN_FINETUNE_EXAMPLES}–"
            f"{MIN_FINETUNE_EXAMPLES_GOOD} that fine-tuning needs, so prompting is the prior"
        )
    if n_train < lo:
        return (
            f"{n_train} training examples clears the {MIN_FINETUNE_EXAMPLES}–"
            f"{MIN_FINETUNE_EXAMPLES_GOOD} minimum for fine-tuning but is below the "
            f"{lo:,}–{hi:,} sweet spot; more data would likely widen a fine-tuning lead"
        )
    if n_train <= hi:
        return f"{n_train:,} training examples is inside the {lo:,}–{hi:,} fine-tuning sweet spot"
    return f"{n_train:,} training examples is above the {lo:,}–{hi:,} sweet spot"


def _volume_rule(monthly: int) -> str:
    side = "prompting (low volume)" if monthly < HIGH_VOLUME else "fine-tuning (high volume)"
    return (
        f"the forecast of {monthly:,} requests/month is on the {side} side of the "
        f"{HIGH_VOLUME:,}/month rule of thumb"
    )


def _test_name(test: PairedTest) -> str:
    return "McNemar" if test.name.startswith("mcnemar") else "paired bootstrap"


def p_bound(test: PairedTest, resamples: int) -> float | None:
    """The resolution of a bootstrap p-value of 0: with R resamples it only says p < 2/R."""
    if test.name == "paired-bootstrap" and test.p_value == 0:
        return 2 / resamples
    return None


def _p_text(test: PairedTest, cfg: ProjectConfig) -> str:
    bound = p_bound(test, cfg.evaluation.bootstrap_resamples)
    p = f"p < {bound:.2g}" if bound is not None else f"p = {test.p_value:.3g}"
    return f"{_test_name(test)} {p}"


def compare(best: CandidateSummary, other: CandidateSummary, cfg: ProjectConfig) -> PairedTest:
    """Paired test of ``best`` against ``other`` on the same examples (diff = best - other)."""
    if best.metric_info.binary:
        return mcnemar(best.correct, other.correct)
    return paired_bootstrap_stat(
        best.columns,
        other.columns,
        metric_stat(best.metric),
        resamples=cfg.evaluation.bootstrap_resamples,
        seed=cfg.seed,
    )


def recommend(
    candidates: list[CandidateSummary], cfg: ProjectConfig, n_train: int
) -> Recommendation:
    """Name a winner only when its lead is significant; else the cheapest within noise."""
    best = max(candidates, key=lambda c: (c.quality, -c.monthly_cost_usd))
    info = best.metric_info
    fmt = info.fmt
    alpha = cfg.evaluation.alpha
    others = [c for c in candidates if c is not best]
    rules = [_data_rule(n_train), _volume_rule(cfg.cost.monthly_requests)]
    priors = f"Measured against the priors: {rules[0]}; {rules[1]}."
    if not others:
        return Recommendation(
            best.name,
            "only-candidate",
            [
                f"{best.name} is the only candidate in this run ({fmt(best.quality)}); "
                "nothing was compared, so this is no recommendation (run all candidates).",
                priors,
            ],
            rules,
        )
    if all(c.vs_best is not None and c.vs_best.p_value < alpha for c in others):
        runner_up = max(others, key=lambda c: c.quality) if others else None
        ci = best.quality_ci
        reason = (
            f"{best.name} has the highest {info.name}, {fmt(best.quality)} "
            f"({cfg.evaluation.confidence:.0%} CI {fmt(ci.low)}–{fmt(ci.high)})"
        )
        if runner_up is not None and runner_up.vs_best is not None:
            test = runner_up.vs_best
            reason += (
                f", significantly above the runner-up {runner_up.name} at "
                f"{fmt(runner_up.quality)} ({_p_text(test, cfg)})"
            )
        reasons = [reason + ".", priors]
        return Recommendation(best.name, "significant", reasons, rules)

    tied = [best] + [c for c in others if c.vs_best is None or c.vs_best.p_value >= alpha]
    horizon = cfg.cost.horizon_months
    tolerance = cfg.cost.tie_tolerance

    def total(c: CandidateSummary) -> float:
        return c.setup_cost_usd + horizon * c.monthly_cost_usd

    low = min(total(c) for c in tied)
    # Per-request cost comes from CPU time over a second or two of work, which moves by
    # 10-20% between runs; costs that close are one cost, and among them the better
    # scoring candidate is the better buy (else the pick would flip from run to run).
    cheap = [c for c in tied if total(c) <= low * (1 + tolerance)]
    pick = max(cheap, key=lambda c: (c.quality, -total(c)))
    tied_names = ", ".join(c.name for c in tied if c is not pick)
    p_text = (
        f" ({_p_text(pick.vs_best, cfg)} against {best.name})" if pick.vs_best is not None else ""
    )
    cost_text = (
        f"{_usd(total(pick))} USD over {horizon} months at the forecast volume "
        f"({_usd(pick.cost_per_1k_usd)} per 1,000 requests, {_usd(pick.setup_cost_usd)} setup)"
    )
    better = "more accurate one" if info.key == "accuracy" else f"one with the higher {info.name}"
    if total(pick) > low:
        cheapest = min(cheap, key=total)
        cost_reason = (
            f"its cost, {cost_text}, is within {tolerance:.0%} of the cheapest "
            f"({cheapest.name}, {_usd(total(cheapest))} USD), which is measurement noise, so "
            f"the {better} is recommended"
        )
    else:
        cost_reason = f"it is the cheapest of them: {cost_text}"
    reasons = [
        f"No candidate is significantly better than all others: {pick.name} "
        f"({fmt(pick.quality)} {info.name}) is within noise of {tied_names}{p_text}, and "
        f"{cost_reason}.",
        priors,
    ]
    return Recommendation(pick.name, "cheapest-within-noise", reasons, rules)


def summarize(
    store: RunStore,
    run_id: str | None = None,
    *,
    llm_cache: str | Path | None = None,
    progress: ProgressSink | None = None,
) -> RunSummary:
    """Rebuild a run's summary from the store (the latest finished run by default).

    ``llm_cache`` is the project's response cache, where the judge's grades are kept
    (default: ``llm_cache.db`` beside the store, as in a project's ``.adaptlab``).
    """
    run = store.run(run_id) if run_id else store.latest_run()
    if run is None:
        raise AdaptlabError(
            "no finished run in this project" if run_id is None else f"no run '{run_id}'",
            file=store.path,
            fix="run 'adaptlab run' first",
            code="no-run",
        )
    cfg = ProjectConfig.model_validate(json.loads(run["config_json"]))
    links = store.run_candidates(run["id"])
    if not links:
        raise AdaptlabError(f"run {run['id']} has no candidates", file=store.path)
    cache = Path(llm_cache) if llm_cache is not None else store.path.with_name("llm_cache.db")
    scorer = Scorer(cfg, llm_cache=cache, progress=progress)
    try:
        cands = [_candidate(store, link, cfg, scorer) for link in links]
    finally:
        scorer.close()
    best = max(cands, key=lambda c: (c.quality, -c.monthly_cost_usd))
    for c in cands:
        if c is not best:
            c.vs_best = compare(best, c, cfg)
    split = json.loads(run["split_json"])
    rec = recommend(cands, cfg, split.get("train", 0) + split.get("val", 0))
    prompt_like = [c for c in cands if not c.trains_weights] or cands
    baseline = min(prompt_like, key=lambda c: c.setup_cost_usd)
    return RunSummary(
        run_id=run["id"],
        project=run["project"],
        created_at=run["created_at"],
        labels=list(cfg.labels),
        split=split,
        model=json.loads(run["model_json"]),
        candidates=cands,
        best=best.name,
        recommendation=rec,
        break_even=break_even(cands, baseline, cfg.cost.horizon_months),
        config=json.loads(run["config_json"]),
        task=cfg.task,
        metric=primary_metric(cfg),
        judge=scorer.judge_stats,
        not_run=json.loads(run["notes_json"] or "{}").get("not_run", {}),
    )
