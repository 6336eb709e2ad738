"""The recommendation: measured facts first, then the task profile's rules of thumb.

1. Candidates the profile rules out are set aside, each with its reason: hosted APIs
   when data may not leave the company, a p95 latency over the budget, a monthly cost
   over the budget at the forecast volume.
2. The rest are compared on the *selection* split (validation; test only when no
   validation answers exist): the best one wins outright when its lead over every
   rival is significant after Holm's correction for the several comparisons; else the
   candidates within noise of it are tied, and the one with the lowest total cost over
   the horizon at the forecast volume wins (costs within ``cost.tie_tolerance`` of the
   cheapest, or less than ``cost.negligible_usd`` above it over the horizon, count as
   equal, and the better scoring of those wins).
3. The seeds' rules of thumb (PRODUCT.md) are stated as priors beside the verdict,
   with whether the measurement agrees; they never overrule it.
4. "What would change it": the break-even volumes against the tied rivals (where the
   cost order flips), the smallest difference the selection split can detect, and a
   rival the profile ruled out that measured better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adaptlab.core.format import pct, usd, volume_text
from adaptlab.data.validate import MIN_FINETUNE_EXAMPLES, MIN_FINETUNE_EXAMPLES_GOOD, SWEET_SPOT
from adaptlab.decide.economics import Roi, break_even_requests, break_even_volume, roi
from adaptlab.evaluation.stats import holm

if TYPE_CHECKING:
    from adaptlab.config import ProjectConfig
    from adaptlab.evaluation.stats import PairedTest
    from adaptlab.evaluation.summary import CandidateSummary, RunSummary

HIGH_VOLUME = 100_000  # requests/month where the seeds' rule of thumb flips to fine-tuning
FINETUNE_ROUTES = {"finetune", "finetune+rag"}
RAG_ROUTES = {"rag", "finetune+rag"}


@dataclass
class BreakEven:
    """Where ``candidate`` (more setup, cheaper per request) overtakes ``baseline``.

    ``requests``: cumulative requests to pay back the extra setup; ``monthly_volume``:
    the starting volume per month at which both cost the same over ``horizon_months``
    (growth included); both None when the candidate is not cheaper per request.
    ``roi`` is at the forecast volume.
    """

    candidate: str
    baseline: str
    requests: float | None
    monthly_volume: float | None
    horizon_months: int
    roi: Roi | None = None


@dataclass
class Recommendation:
    """The verdict: ``kind`` is "significant", "cheapest-within-noise", "best-of-equal-cost"
    (tied on quality, costs equal within tolerance or negligible) or "only-candidate"."""

    winner: str
    kind: str
    reasons: list[str]
    rules: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # what would change the decision
    excluded: dict[str, str] = field(default_factory=dict)  # candidate -> why ruled out
    selected_on: str = "val"


def excluded_by_profile(c: CandidateSummary, cfg: ProjectConfig) -> str | None:
    """Why the task profile rules ``c`` out, or None."""
    p = cfg.profile
    if not p.data_may_leave and c.hosted:
        return "sends inputs to a hosted API, and the profile says data may not leave"
    # (a nan p95, no latency measured, compares False)
    if p.latency_budget_ms is not None and c.latency_p95_ms > p.latency_budget_ms:
        return (
            f"p95 latency {c.latency_p95_ms:,.0f} ms is over the budget of "
            f"{p.latency_budget_ms:,.0f} ms"
        )
    if p.monthly_budget_usd is not None:
        monthly = c.cost.monthly_usd(p.monthly_requests)
        if monthly > p.monthly_budget_usd:
            return (
                f"costs {usd(monthly)} a month at {p.monthly_requests:,} requests, over the "
                f"budget of {usd(p.monthly_budget_usd)}"
            )
    return None


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


def profile_rules(cfg: ProjectConfig, n_train: int, winner: CandidateSummary) -> list[str]:
    """The seeds' rules of thumb that the profile triggers, each with whether ``winner``
    follows it (a prior, stated beside the measurement, never instead of it)."""
    p = cfg.profile
    route = winner.route
    rules = [_data_rule(n_train), _volume_rule(p.monthly_requests)]

    def agrees(ok: bool) -> str:
        return " — the recommendation follows it" if ok else " — the measurement overrules it"

    if p.knowledge_change in ("monthly", "weekly", "daily"):
        rules.append(
            f"knowledge changes {p.knowledge_change}: RAG keeps answers current without "
            f"retraining{agrees(route in RAG_ROUTES or cfg.task == 'classification')}"
        )
    if p.citations_needed:
        rules.append(f"answers must cite sources: that takes RAG{agrees(route in RAG_ROUTES)}")
    if p.hallucination_tolerance == "low" and cfg.task != "classification":
        rules.append(
            "hallucinations must be rare: ground answers in retrieved passages (RAG)"
            + agrees(route in RAG_ROUTES)
        )
    if not p.data_may_leave:
        rules.append(
            "data may not leave the company: self-hosted models only (a local LoRA model or "
            f"an encoder){agrees(not winner.hosted)}"
        )
    if p.requirements_change in ("monthly", "weekly"):
        rules.append(
            f"requirements change {p.requirements_change}: a prompt is edited in minutes, a "
            f"fine-tune needs new data and training{agrees(route not in FINETUNE_ROUTES)}"
        )
    if p.format_critical:
        rules.append(
            "the output format is critical: fine-tuned models hold a format most consistently"
            + agrees(route in FINETUNE_ROUTES or route == "classical" or not winner.generative)
        )
    if p.latency_budget_ms is not None:
        rules.append(
            f"a latency budget of {p.latency_budget_ms:,.0f} ms: long prompts cost 100–500 ms "
            "(the seeds); candidates over it are ruled out above"
        )
    return rules


def _compare(
    best: CandidateSummary, others: list[CandidateSummary], cfg: ProjectConfig
) -> dict[str, tuple[PairedTest, float]]:
    """Paired tests of ``best`` against each rival on the selection split, Holm-adjusted."""
    from adaptlab.evaluation.summary import compare

    tests = {c.name: compare(best, c, cfg, split="selection") for c in others}
    adjusted = holm([t.p_value for t in tests.values()])
    return {name: (t, p) for (name, t), p in zip(tests.items(), adjusted, strict=True)}


def _p_text(test: PairedTest, adjusted: float, cfg: ProjectConfig) -> str:
    from adaptlab.evaluation.summary import p_bound

    name = "McNemar" if test.name.startswith("mcnemar") else "paired bootstrap"
    bound = p_bound(test, cfg.evaluation.bootstrap_resamples)
    if bound is not None:
        return f"{name} p < {bound:.2g}"
    return f"{name} p = {test.p_value:.2g}, Holm-adjusted {adjusted:.2g}"


def recommend(
    candidates: list[CandidateSummary],
    cfg: ProjectConfig,
    n_train: int,
    *,
    selected_on: str,
) -> Recommendation:
    """Name a winner (see the module docstring for the rule).

    Each candidate needs its selection-split figures (``selection_ci``, ``sel_columns``),
    its test figures and its :class:`~adaptlab.decide.economics.CostModel`.
    """
    p = cfg.profile
    excluded = {c.name: why for c in candidates if (why := excluded_by_profile(c, cfg))}
    pool = [c for c in candidates if c.name not in excluded] or candidates
    months, growth, volume = p.horizon_months, p.monthly_growth, p.monthly_requests

    def total(c: CandidateSummary) -> float:
        return c.cost.total_usd(volume, months, growth)

    best = max(pool, key=lambda c: (c.selection_ci.estimate, -total(c)))
    info = best.metric_info
    fmt = info.fmt
    where = "validation" if selected_on == "val" else "test"
    alpha = cfg.evaluation.alpha
    facts = _facts(best, cfg, where)
    changes: list[str] = []
    for name, why in excluded.items():
        c = next(x for x in candidates if x.name == name)
        if c.selection_ci.estimate > best.selection_ci.estimate:
            changes.append(
                f"{name} measured higher ({fmt(c.selection_ci.estimate)} on {where}) but "
                f"is ruled out: it {why}; relaxing that would bring it back"
            )
    if excluded and len(pool) == len(candidates):
        changes.append("every candidate breaks the profile's limits; none is ruled out")
    others = [c for c in pool if c is not best]
    if not others:
        rec = Recommendation(
            best.name,
            "only-candidate",
            [
                f"{best.name} is the only candidate left to compare ({fmt(best.quality)}); "
                "nothing was compared, so this is no recommendation (run all candidates).",
                *facts,
            ],
            profile_rules(cfg, n_train, best),
            changes,
            excluded,
            selected_on,
        )
        return rec
    tests = _compare(best, others, cfg)
    for c in others:
        c.vs_chosen, c.p_holm = tests[c.name]
    if all(adj < alpha for _, adj in tests.values()):
        runner_up = max(others, key=lambda c: c.selection_ci.estimate)
        test, adj = tests[runner_up.name]
        ci = best.selection_ci
        reason = (
            f"{best.name} has the highest {info.name} on {where}, {fmt(ci.estimate)} "
            f"({cfg.evaluation.confidence:.0%} CI {fmt(ci.low)}–{fmt(ci.high)}), "
            f"significantly above the runner-up {runner_up.name} at "
            f"{fmt(runner_up.selection_ci.estimate)} ({_p_text(test, adj, cfg)}; "
            f"{len(others)} comparison{'s' if len(others) > 1 else ''})."
        )
        return Recommendation(
            best.name,
            "significant",
            [reason, *facts],
            profile_rules(cfg, n_train, best),
            changes,
            excluded,
            selected_on,
        )

    tied = [best] + [c for c in others if tests[c.name][1] >= alpha]
    tolerance = cfg.cost.tie_tolerance
    low = min(total(c) for c in tied)
    # Per-request cost comes from CPU time over a second or two of work, which moves by
    # 10-20% between runs; costs that close are one cost, and among them the better
    # scoring candidate is the better buy (else the pick would flip from run to run).
    # A difference no budget would notice (under cost.negligible_usd over the horizon) is
    # no reason to give up quality either: with a small validation split nearly every
    # candidate is "within noise", and fractions of a cent must not pick the weakest.
    negligible = cfg.cost.negligible_usd
    cheap = [c for c in tied if total(c) <= low * (1 + tolerance) or total(c) - low <= negligible]
    pick = max(cheap, key=lambda c: (c.selection_ci.estimate, -total(c)))
    tied_names = ", ".join(c.name for c in tied if c is not pick)
    vs = ""
    if pick is not best:
        test, adj = tests[pick.name]
        vs = f" ({_p_text(test, adj, cfg)} against {best.name})"
    cost_text = (
        f"{usd(total(pick))} over {months} months at {volume:,} requests/month "
        f"({usd(pick.cost.per_request_usd * 1000)} per 1,000 requests, "
        f"{usd(pick.cost.setup_usd)} setup)"
    )
    better = "more accurate one" if info.key == "accuracy" else f"one with the higher {info.name}"
    if total(pick) > low:
        cheapest = min(cheap, key=total)
        if total(pick) - low <= negligible:
            why = f"less than {usd(negligible)} more over {months} months, which no budget notices"
        else:
            why = f"within {tolerance:.0%} of it, which is measurement noise"
        cost_reason = (
            f"its cost, {cost_text}, is {why} (the cheapest is {cheapest.name}, "
            f"{usd(total(cheapest))}), so the {better} is recommended"
        )
    else:
        cost_reason = f"it is the cheapest of them: {cost_text}"
    reasons = [
        f"No candidate is significantly better than all others on {where}: {pick.name} "
        f"({fmt(pick.selection_ci.estimate)} {info.name}) is within noise of {tied_names}"
        f"{vs}, and {cost_reason}.",
        *_facts(pick, cfg, where),
    ]
    for c in tied:
        if c is pick:
            continue
        v = break_even_volume(pick.cost, c.cost, months, growth)
        if v is None:
            continue
        side = "above" if c.cost.per_request_usd < pick.cost.per_request_usd else "below"
        changes.insert(
            0,
            f"{side} ~{volume_text(v)} requests/month {c.name} is cheaper at equal "
            f"{info.name} (break-even over {months} months)",
        )
    return Recommendation(
        pick.name,
        "cheapest-within-noise" if total(pick) <= low else "best-of-equal-cost",
        reasons,
        profile_rules(cfg, n_train, pick),
        changes,
        excluded,
        selected_on,
    )


def _facts(c: CandidateSummary, cfg: ProjectConfig, where: str) -> list[str]:
    """The measured figures of the pick, in the order the reader needs them."""
    fmt = c.metric_info.fmt
    ci = c.quality_ci
    conf = f"{cfg.evaluation.confidence:.0%}"
    facts = []
    if where == "validation":
        facts.append(
            f"On the test split, used once to report: {fmt(ci.estimate)} "
            f"({conf} CI {fmt(ci.low)}–{fmt(ci.high)}, n = {c.n:,})."
        )
    parts = []
    if c.latency_p50_ms == c.latency_p50_ms:
        parts.append(f"latency p50 {c.latency_p50_ms:,.3g} ms, p95 {c.latency_p95_ms:,.3g} ms")
    if c.agreement is not None:
        parts.append(f"{pct(c.agreement)} of repeated answers agree")
    volume = cfg.profile.monthly_requests
    parts.append(f"{usd(c.cost.monthly_usd(volume))} a month at {volume:,} requests")
    facts.append(c.name + ": " + "; ".join(parts) + ".")
    return facts


def break_evens(
    candidates: list[CandidateSummary], baseline: CandidateSummary, cfg: ProjectConfig
) -> list[BreakEven]:
    """Each candidate dearer to set up than ``baseline``: where it pays back, and its ROI."""
    p = cfg.profile
    out = []
    for c in candidates:
        if c is baseline or c.cost.setup_usd <= baseline.cost.setup_usd:
            continue
        requests = break_even_requests(baseline.cost, c.cost)
        volume = (
            break_even_volume(baseline.cost, c.cost, p.horizon_months, p.monthly_growth)
            if requests is not None
            else None
        )
        out.append(
            BreakEven(
                c.name,
                baseline.name,
                requests,
                volume,
                p.horizon_months,
                roi(c.cost, baseline.cost, p.monthly_requests, p.horizon_months, p.monthly_growth),
            )
        )
    return out


def selection_line(summary: RunSummary) -> str:
    """The chosen candidate's figure on the selection split and on test, beside the best
    candidate on test: how far choosing without peeking landed from the best."""
    win = summary.candidate(summary.recommendation.winner)
    top = summary.candidate(summary.best_on_test or win.name)
    fmt = summary.metric_info.fmt
    where = "validation" if summary.selected_on == "val" else "test"
    text = (
        f"Chosen on {where}: {win.name} ({fmt(win.selection_ci.estimate)} on {where}, "
        f"{fmt(win.quality)} on test)"
    )
    if top is win:
        return text + "; it is also the best on test."
    gap = 100 * (top.quality - win.quality)
    return text + f"; best on test: {top.name} ({fmt(top.quality)}, {gap:.1f} points higher)."
