"""Everything a report shows, recomputed from the predictions in the run store.

Nothing here trusts a number written at run time except measured seconds: every
accuracy, interval, test and cost is derived again from stored prediction rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adaptlab.config import ProjectConfig
from adaptlab.data.validate import MIN_FINETUNE_EXAMPLES, MIN_FINETUNE_EXAMPLES_GOOD, SWEET_SPOT
from adaptlab.errors import AdaptlabError
from adaptlab.evaluation.metrics import ClassificationMetrics, classification_metrics, encode
from adaptlab.evaluation.stats import Interval, PairedTest, bootstrap_ci, mcnemar, percentile
from adaptlab.store import PredictionRow, RunStore

HIGH_VOLUME = 100_000  # requests/month where the seeds' rule of thumb flips to fine-tuning


@dataclass
class CandidateSummary:
    name: str
    strategy: str
    params: dict[str, Any]
    key: str
    reused: bool
    trains_weights: bool
    metrics: ClassificationMetrics
    accuracy_ci: Interval
    macro_f1_ci: Interval
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_per_s: float
    fit_seconds: float
    fit_cpu_seconds: float
    cpu_ms_per_request: float
    cost_per_1k_usd: float
    setup_cost_usd: float
    monthly_cost_usd: float
    curves: list[tuple[int, float, str, str, float]]
    info: dict[str, Any]
    correct: np.ndarray
    vs_best: PairedTest | None = None
    # Generative candidates: measured tokens, API cost and how answers parsed.
    llm: str | None = None  # "openai:gpt-4o-mini"
    input_tokens_per_request: float | None = None
    output_tokens_per_request: float | None = None
    api_cost_per_1k_usd: float | None = None  # None: no price (self-hosted or unknown)
    price_kind: str | None = None
    unparsed: int = 0  # answers no label (or valid object) could be read from
    statuses: dict[str, int] = field(default_factory=dict)
    # Consistency: the same input answered n times.
    consistency_samples: int = 0
    agreement: float | None = None  # mean share of samples that agree with the majority
    format_validity: float | None = None  # share of samples that parsed / validated

    @property
    def accuracy(self) -> float:
        return self.metrics.accuracy


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

    def candidate(self, name: str) -> CandidateSummary:
        return next(c for c in self.candidates if c.name == name)


def pct(x: float) -> str:
    """Percent with one decimal: the one format of reasons, report and plots."""
    return f"{100 * x:.1f}%"


def _usd(x: float) -> str:
    return f"{x:.3g}"


def _candidate(
    store: RunStore,
    link: Any,
    labels: list[str],
    cfg: ProjectConfig,
) -> CandidateSummary:
    key = link["result_key"]
    res = store.result(key)
    rows: list[PredictionRow] = store.predictions(key)
    gold = [r.gold for r in rows]
    pred = [r.predicted for r in rows]
    metrics = classification_metrics(gold, pred, labels)
    g, p = encode(gold, pred, labels)
    ev = cfg.evaluation
    ci = {
        m: bootstrap_ci(
            g,
            p,
            len(labels),
            metric=m,
            resamples=ev.bootstrap_resamples,
            confidence=ev.confidence,
            seed=cfg.seed,
        )
        for m in ("accuracy", "macro_f1")
    }
    lat = [r.latency_ms for r in rows if r.latency_ms is not None]
    n = max(res.n_predictions, 1)
    cpu_per_req = res.predict_cpu_seconds / n
    price = cfg.cost.cpu_hour_usd / 3600
    per_1k = cpu_per_req * 1000 * price
    setup = res.fit_cpu_seconds * price
    extra = _generative(cfg, link["name"], rows, store.consistency(key))
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
        metrics=metrics,
        accuracy_ci=ci["accuracy"],
        macro_f1_ci=ci["macro_f1"],
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
        correct=(g == p),
        **extra,
    )


def _generative(
    cfg: ProjectConfig, name: str, rows: list[PredictionRow], consistency: list[Any]
) -> dict[str, Any]:
    """Token, cost, parse and consistency figures of a candidate (empty for encoders)."""
    from collections import Counter

    out: dict[str, Any] = {}
    cand = next((c for c in cfg.candidates if c.name == name), None)
    statuses = Counter(r.status for r in rows if r.status is not None)
    if statuses:
        out["statuses"] = dict(statuses)
        out["unparsed"] = statuses.get("unparsed", 0) + statuses.get("invalid", 0)
    if consistency:
        by_input: dict[int, list[Any]] = {}
        for idx, _sample, pred, _status in consistency:
            by_input.setdefault(idx, []).append(pred)
        agree = [Counter(v).most_common(1)[0][1] / len(v) for v in by_input.values()]
        valid = [st not in ("unparsed", "invalid") for *_, st in consistency]
        out["consistency_samples"] = max(len(v) for v in by_input.values())
        out["agreement"] = float(np.mean(agree))
        out["format_validity"] = float(np.mean(valid))
    if cand is None or cand.llm is None or cand.llm not in cfg.llms:
        return out
    from adaptlab.llm.prices import cost_usd, price_for, price_kind
    from adaptlab.llm.types import Usage

    llm = cfg.llms[cand.llm]
    out["llm"] = f"{llm.backend}:{llm.name}"
    used = [r for r in rows if r.input_tokens is not None]
    if used:
        out["input_tokens_per_request"] = float(np.mean([r.input_tokens for r in used]))
        out["output_tokens_per_request"] = float(np.mean([r.output_tokens or 0 for r in used]))
    out["price_kind"] = price_kind(llm)
    price = price_for(llm)
    if price is not None and used:
        total = sum(
            cost_usd(Usage(r.input_tokens or 0, r.output_tokens or 0, r.cached_tokens or 0), price)
            for r in used
        )
        out["api_cost_per_1k_usd"] = total / len(used) * 1000
    return out


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


def recommend(
    candidates: list[CandidateSummary], cfg: ProjectConfig, n_train: int
) -> Recommendation:
    """Name a winner only when its lead is significant; else the cheapest within noise."""
    best = max(candidates, key=lambda c: (c.accuracy, -c.monthly_cost_usd))
    alpha = cfg.evaluation.alpha
    others = [c for c in candidates if c is not best]
    rules = [_data_rule(n_train), _volume_rule(cfg.cost.monthly_requests)]
    priors = f"Measured against the priors: {rules[0]}; {rules[1]}."
    if not others:
        return Recommendation(
            best.name,
            "only-candidate",
            [
                f"{best.name} is the only candidate in this run ({pct(best.accuracy)}); "
                "nothing was compared, so this is no recommendation (run all candidates).",
                priors,
            ],
            rules,
        )
    if all(c.vs_best is not None and c.vs_best.p_value < alpha for c in others):
        runner_up = max(others, key=lambda c: c.accuracy) if others else None
        reason = (
            f"{best.name} has the highest accuracy, {pct(best.accuracy)} "
            f"(95% CI {pct(best.accuracy_ci.low)}–{pct(best.accuracy_ci.high)})"
        )
        if runner_up is not None and runner_up.vs_best is not None:
            reason += (
                f", significantly above the runner-up {runner_up.name} at "
                f"{pct(runner_up.accuracy)} (McNemar p = {runner_up.vs_best.p_value:.3g})"
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
    # 10-20% between runs; costs that close are one cost, and among them the more
    # accurate candidate is the better buy (else the pick would flip from run to run).
    cheap = [c for c in tied if total(c) <= low * (1 + tolerance)]
    pick = max(cheap, key=lambda c: (c.accuracy, -total(c)))
    tied_names = ", ".join(c.name for c in tied if c is not pick)
    p_text = (
        f" (McNemar p = {pick.vs_best.p_value:.3g} against {best.name})"
        if pick.vs_best is not None
        else ""
    )
    cost_text = (
        f"{_usd(total(pick))} USD over {horizon} months at the forecast volume "
        f"({_usd(pick.cost_per_1k_usd)} per 1,000 requests, {_usd(pick.setup_cost_usd)} setup)"
    )
    if total(pick) > low:
        cheapest = min(cheap, key=total)
        cost_reason = (
            f"its cost, {cost_text}, is within {tolerance:.0%} of the cheapest "
            f"({cheapest.name}, {_usd(total(cheapest))} USD), which is measurement noise, so "
            "the more accurate one is recommended"
        )
    else:
        cost_reason = f"it is the cheapest of them: {cost_text}"
    reasons = [
        f"No candidate is significantly better than all others: {pick.name} "
        f"({pct(pick.accuracy)}) is within noise of {tied_names}{p_text}, and {cost_reason}.",
        priors,
    ]
    return Recommendation(pick.name, "cheapest-within-noise", reasons, rules)


def summarize(store: RunStore, run_id: str | None = None) -> RunSummary:
    """Rebuild a run's summary from the store (the latest finished run by default)."""
    run = store.run(run_id) if run_id else store.latest_run()
    if run is None:
        raise AdaptlabError(
            "no finished run in this project" if run_id is None else f"no run '{run_id}'",
            file=store.path,
            fix="run 'adaptlab run' first",
            code="no-run",
        )
    cfg = ProjectConfig.model_validate(json.loads(run["config_json"]))
    labels = list(cfg.labels)
    links = store.run_candidates(run["id"])
    if not links:
        raise AdaptlabError(f"run {run['id']} has no candidates", file=store.path)
    cands = [_candidate(store, link, labels, cfg) for link in links]
    best = max(cands, key=lambda c: (c.accuracy, -c.monthly_cost_usd))
    for c in cands:
        if c is not best:
            c.vs_best = mcnemar(best.correct, c.correct)
    split = json.loads(run["split_json"])
    rec = recommend(cands, cfg, split.get("train", 0) + split.get("val", 0))
    prompt_like = [c for c in cands if not c.trains_weights] or cands
    baseline = min(prompt_like, key=lambda c: c.setup_cost_usd)
    return RunSummary(
        run_id=run["id"],
        project=run["project"],
        created_at=run["created_at"],
        labels=labels,
        split=split,
        model=json.loads(run["model_json"]),
        candidates=cands,
        best=best.name,
        recommendation=rec,
        break_even=break_even(cands, baseline, cfg.cost.horizon_months),
        config=json.loads(run["config_json"]),
    )
