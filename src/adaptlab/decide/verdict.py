"""The verdict: which candidate to use and the measured facts behind it, as data.

:func:`verdict` weighs a run's measurements (a
:class:`~adaptlab.evaluation.summary.RunSummary`) against the task profile and returns
a :class:`Verdict`: immutable, typed, without a sentence in it
(:mod:`adaptlab.decide.explain` writes the sentences). The rule:

1. Candidates the profile rules out are set aside, each with a structured
   :class:`Exclusion`: hosted APIs when data may not leave the company, a p95 latency
   over the budget, a monthly cost over the budget at the forecast volume. When every
   candidate breaks a limit, none is set aside.
2. The rest are compared on the *selection* split (validation; test only when no
   validation answers exist): the best one (the *leader*) wins outright when its lead
   over every rival is significant after Holm's correction for the several comparisons
   (Holm 1979, Scand. J. Statistics 6:65-70); else the candidates within noise of it
   are tied, and the one with the lowest total cost over the horizon at the forecast
   volume wins (costs within ``cost.tie_tolerance`` of the cheapest, or less than
   ``cost.negligible_usd`` above it over the horizon, count as equal, and the better
   scoring of those wins).
3. Beside the choice: the winner against every other candidate on test (Holm-adjusted),
   the break-even volumes against the tied rivals and against the cheapest-to-set-up
   prompt-like baseline (with ROI, :mod:`adaptlab.decide.economics`), the smallest
   difference the selection split can detect, the best candidate on test, and the
   learning-curve crossings that involve the winner (:mod:`adaptlab.decide.curves`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pydantic import ConfigDict

from adaptlab.config import CostConfig, ProfileConfig
from adaptlab.decide.curves import CurveEvidence, LearningCurves, curve_evidence, learning_curves
from adaptlab.decide.economics import Roi, break_even_requests, break_even_volume, roi
from adaptlab.evaluation.cost_model import CostModel
from adaptlab.evaluation.scoring import metric_stat
from adaptlab.evaluation.stats import PairedTest, holm, minimum_detectable_difference
from adaptlab.evaluation.summary import CandidateSummary, RunSummary, compare

Kind = Literal["significant", "cheapest-within-noise", "best-of-equal-cost", "only-candidate"]
#: The profile limit an :class:`Exclusion` breaks (a key of ``profile:``).
Limit = Literal["data_may_leave", "latency_budget_ms", "monthly_budget_usd"]


class FrozenProfile(ProfileConfig):
    """A :class:`~adaptlab.config.ProfileConfig` that refuses assignment (the verdict's copy)."""

    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True)
class Exclusion:
    """Why the profile rules ``candidate`` out: ``measured`` broke ``limit``'s ``allowed``.

    ``data_may_leave``: measured True (the candidate sends inputs to a hosted API),
    allowed False. ``latency_budget_ms``: the p95 latency in ms against the budget.
    ``monthly_budget_usd``: the monthly cost in USD at the verdict's forecast volume
    (:attr:`Verdict.volume`) against the budget.
    """

    candidate: str
    limit: Limit
    measured: float | bool
    allowed: float | bool


@dataclass(frozen=True)
class Paired:
    """A paired test of ``reference`` against ``rival`` on the same examples.

    ``test.diff`` is reference minus rival; ``p_holm`` its p-value Holm-adjusted over
    the family of rivals it was made with (see :func:`verdict`).
    """

    reference: str
    rival: str
    test: PairedTest
    p_holm: float


@dataclass(frozen=True)
class Costs:
    """A candidate's :class:`CostModel` and its totals at the verdict's forecast: USD for
    one month at the forecast volume, and over the horizon with growth
    (:meth:`CostModel.total_usd`)."""

    model: CostModel
    monthly_usd: float
    total_usd: float


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class VolumeFlip:
    """Where a tied ``rival`` and the winner cost the same over the horizon.

    ``monthly_volume`` is the starting volume per month
    (:func:`~adaptlab.decide.economics.break_even_volume`); ``side`` says where the rival
    is the cheaper of the two: "above" it (the rival is cheaper per request) or "below".
    """

    rival: str
    monthly_volume: float
    side: Literal["above", "below"]


@dataclass(frozen=True)
class Verdict:
    """Which candidate to use and every measured fact the choice rests on; no prose.

    ``winner`` is chosen on ``selected_on`` ("val", or "test" when some candidate has no
    validation answers) by the rule ``kind``: "significant" (``leader``'s lead over every
    eligible rival is significant), "cheapest-within-noise" or "best-of-equal-cost"
    (``tied`` holds the leader and the rivals within noise of it, ``equal_cost`` those of
    them whose cost counts as the cheapest's, ``cheapest`` the cheapest of them), or
    "only-candidate" (nothing left to compare). ``runner_up`` is the best eligible rival
    on the selection split (None for "only-candidate").

    ``excluded``: the candidates the profile rules out, in run order; ``all_excluded``:
    every candidate broke a limit, so none was set aside. ``selection_tests``: the leader
    against each eligible rival on the selection split, Holm-adjusted over them;
    ``test_tests``: the winner against every other candidate on test, Holm-adjusted over
    them (both keyed by the rival, in run order). ``costs``: every candidate's costs.
    ``flips``: where a tied rival's cost crosses the winner's, in ``tied`` order.
    ``break_evens``: the candidates dearer to set up than ``baseline`` (the prompt-like
    candidate cheapest to set up), where each pays back and its ROI. ``mdd``: the
    smallest difference of the primary metric (a fraction) the selection split can
    detect between the winner and its closest rival (80% power at ``alpha``), None when
    there is no rival or no spread. ``best_on_test``: the highest test figure (the
    cheaper one per month of equals). ``learning``: the stored learning curves, with
    ``curves`` the crossings of them that involve the winner (both None without points).

    ``profile`` is the profile weighed against (read-only); ``alpha``, ``tie_tolerance``
    and ``negligible_usd`` the thresholds applied.
    """

    winner: str
    kind: Kind
    selected_on: str
    leader: str
    runner_up: str | None
    excluded: tuple[Exclusion, ...]
    all_excluded: bool
    tied: tuple[str, ...]
    equal_cost: tuple[str, ...]
    cheapest: str | None
    selection_tests: Mapping[str, Paired]
    test_tests: Mapping[str, Paired]
    costs: Mapping[str, Costs]
    flips: tuple[VolumeFlip, ...]
    baseline: str
    break_evens: tuple[BreakEven, ...]
    mdd: float | None
    best_on_test: str
    learning: LearningCurves | None
    curves: CurveEvidence | None
    profile: ProfileConfig
    alpha: float
    tie_tolerance: float
    negligible_usd: float

    def __post_init__(self) -> None:
        for name in ("selection_tests", "test_tests", "costs"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if not isinstance(self.profile, FrozenProfile):
            object.__setattr__(
                self, "profile", FrozenProfile.model_validate(self.profile.model_dump())
            )

    @property
    def volume(self) -> int:
        """The forecast: requests per month at the start of the horizon."""
        return self.profile.monthly_requests

    @property
    def months(self) -> int:
        """The horizon over which one-off costs must pay back, in months."""
        return self.profile.horizon_months

    @property
    def growth(self) -> float:
        """Monthly growth of the volume (0.05 = 5%), compounding."""
        return self.profile.monthly_growth

    def exclusion(self, name: str) -> Exclusion | None:
        """Why candidate ``name`` is ruled out, or None."""
        return next((e for e in self.excluded if e.candidate == name), None)


def exclusion(c: CandidateSummary, profile: ProfileConfig) -> Exclusion | None:
    """Why ``profile`` rules ``c`` out, or None; the first limit broken, in the order
    data_may_leave, latency_budget_ms, monthly_budget_usd."""
    if not profile.data_may_leave and c.hosted:
        return Exclusion(c.name, "data_may_leave", True, False)
    # (a nan p95, no latency measured, compares False)
    budget = profile.latency_budget_ms
    if budget is not None and c.latency_p95_ms > budget:
        return Exclusion(c.name, "latency_budget_ms", c.latency_p95_ms, budget)
    if profile.monthly_budget_usd is not None:
        monthly = c.cost.monthly_usd(profile.monthly_requests)
        if monthly > profile.monthly_budget_usd:
            return Exclusion(c.name, "monthly_budget_usd", monthly, profile.monthly_budget_usd)
    return None


def break_evens(
    candidates: list[CandidateSummary], baseline: CandidateSummary, profile: ProfileConfig
) -> list[BreakEven]:
    """Each candidate dearer to set up than ``baseline``: where it pays back, and its ROI
    at ``profile``'s volume over its horizon."""
    p = profile
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


def _holm_tests(
    reference: CandidateSummary, rivals: list[CandidateSummary], tests: list[PairedTest]
) -> dict[str, Paired]:
    adjusted = holm([t.p_value for t in tests])
    return {
        c.name: Paired(reference.name, c.name, t, p)
        for c, t, p in zip(rivals, tests, adjusted, strict=True)
    }


def verdict(summary: RunSummary, profile: ProfileConfig, cost: CostConfig) -> Verdict:
    """Name a winner of ``summary``'s candidates under ``profile`` (see the module docstring).

    ``cost`` gives the tie thresholds (``tie_tolerance``, ``negligible_usd``); the
    candidates' cost models are the summary's, priced when it was made. Paired tests use
    the run's evaluation settings (``summary.cfg.evaluation``: alpha, resamples, seed).
    """
    cfg = summary.cfg
    cands = list(summary.candidates)
    months, growth = profile.horizon_months, profile.monthly_growth
    volume = profile.monthly_requests
    costs = {
        c.name: Costs(c.cost, c.cost.monthly_usd(volume), c.cost.total_usd(volume, months, growth))
        for c in cands
    }

    def total(c: CandidateSummary) -> float:
        return costs[c.name].total_usd

    excluded = tuple(e for c in cands if (e := exclusion(c, profile)) is not None)
    out = {e.candidate for e in excluded}
    pool = [c for c in cands if c.name not in out] or cands
    leader = max(pool, key=lambda c: (c.selection_ci.estimate, -total(c)))
    others = [c for c in pool if c is not leader]
    alpha = cfg.evaluation.alpha
    selection = _holm_tests(
        leader, others, [compare(leader, c, cfg, split="selection") for c in others]
    )
    tied: list[CandidateSummary] = []
    cheap: list[CandidateSummary] = []
    flips: list[VolumeFlip] = []
    runner_up = max(others, key=lambda c: c.selection_ci.estimate) if others else None
    if not others:
        kind: Kind = "only-candidate"
        pick = leader
    elif all(t.p_holm < alpha for t in selection.values()):
        kind, pick = "significant", leader
    else:
        tied = [leader] + [c for c in others if selection[c.name].p_holm >= alpha]
        low = min(total(c) for c in tied)
        # Per-request cost comes from CPU time over a second or two of work, which moves
        # by 10-20% between runs; costs that close are one cost, and among them the better
        # scoring candidate is the better buy (else the pick would flip from run to run).
        # A difference no budget would notice (under cost.negligible_usd over the horizon)
        # is no reason to give up quality either: with a small validation split nearly
        # every candidate is "within noise", and fractions of a cent must not pick the
        # weakest.
        cheap = [
            c
            for c in tied
            if total(c) <= low * (1 + cost.tie_tolerance) or total(c) - low <= cost.negligible_usd
        ]
        pick = max(cheap, key=lambda c: (c.selection_ci.estimate, -total(c)))
        kind = "cheapest-within-noise" if total(pick) <= low else "best-of-equal-cost"
        for c in tied:
            if c is pick:
                continue
            v = break_even_volume(pick.cost, c.cost, months, growth)
            if v is not None:
                side: Literal["above", "below"] = (
                    "above" if c.cost.per_request_usd < pick.cost.per_request_usd else "below"
                )
                flips.append(VolumeFlip(c.name, v, side))

    rest = [c for c in cands if c is not pick]
    on_test = _holm_tests(pick, rest, [compare(pick, c, cfg) for c in rest])
    mdd = None
    if rest:
        closest = max(rest, key=lambda c: c.selection_ci.estimate)
        stat = metric_stat(pick.metric)
        mdd = minimum_detectable_difference(
            stat(pick.sel_columns) - stat(closest.sel_columns), alpha
        )
    best_on_test = max(cands, key=lambda c: (c.quality, -c.monthly_cost_usd))
    prompt_like = [c for c in cands if not c.trains_weights] or cands
    baseline = min(prompt_like, key=lambda c: c.cost.setup_usd)
    learning = learning_curves(
        summary.curve_points,
        summary.curve_flat,
        int(summary.split.get("train", 0)),
        cfg.evaluation.confidence,
    )
    return Verdict(
        winner=pick.name,
        kind=kind,
        selected_on=summary.selected_on,
        leader=leader.name,
        runner_up=None if runner_up is None else runner_up.name,
        excluded=excluded,
        all_excluded=bool(excluded) and len(pool) == len(cands),
        tied=tuple(c.name for c in tied),
        equal_cost=tuple(c.name for c in cheap),
        cheapest=min(cheap, key=total).name if cheap else None,
        selection_tests=selection,
        test_tests=on_test,
        costs=costs,
        flips=tuple(flips),
        baseline=baseline.name,
        break_evens=tuple(break_evens(cands, baseline, profile)),
        mdd=mdd,
        best_on_test=best_on_test.name,
        learning=learning,
        curves=None if learning is None else curve_evidence(learning, pick.name),
        profile=profile,
        alpha=alpha,
        tie_tolerance=cost.tie_tolerance,
        negligible_usd=cost.negligible_usd,
    )
