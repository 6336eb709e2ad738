"""The verdict: which candidate to use and the measured facts behind it, as data.

:func:`verdict` weighs a run's measurements (a
:class:`~adaptlab.evaluation.summary.RunSummary`) against the task profile and returns
a :class:`Verdict`: immutable, typed, without a sentence in it
(:mod:`adaptlab.decide.explain` writes the sentences). The rule:

1. Candidates the profile rules out are set aside, each with a structured
   :class:`Exclusion`: hosted APIs when data may not leave the company, a p95 latency
   over the budget, a monthly cost over the budget at the forecast volume. When every
   candidate breaks a limit, none is set aside.
2. The rest are compared on their selection evidence (k-fold cross-validation over
   train+val for candidates cheap to refit, else validation; test only when some
   candidate has no validation answers): the best one (the *leader*) wins outright
   when its lead over every rival is significant after Holm's correction for the
   several comparisons (Holm 1979, Scand. J. Statistics 6:65-70), each test on the
   examples the pair shares. Else the candidates not significantly below it whose
   estimate is also within ``TIE_SE_Z`` standard errors of the paired difference are
   *tied* (the one-standard-error rule, :mod:`adaptlab.decide.rule`), and
   :func:`adaptlab.decide.rule.choose` picks among them by what the user pays: the
   lowest expected total with ``profile.error_cost_usd`` set, else the lowest total
   cost (within ``cost.tie_tolerance`` or ``cost.negligible_usd``), then the p95
   latency, then the training time (each within a factor of 2), then the estimate.
   ``bench/selection_rule.py`` chose this rule by simulated regret.
3. Beside the choice: the winner's selection estimate corrected for having been
   chosen among K (:class:`Corrected`), the winner against every other candidate on
   test (Holm-adjusted), the break-even volumes against the tied rivals and against
   the cheapest-to-set-up prompt-like baseline among the *comparable* candidates
   (tied, or within ``QUALITY_FLOOR`` of the leader: a candidate 20 points worse is no
   alternative at any volume; with ROI, :mod:`adaptlab.decide.economics`), the
   smallest difference the selection split can detect, the best candidate on test,
   and the learning-curve crossings that involve the winner
   (:mod:`adaptlab.decide.curves`).

Routes are compared at their best: where a candidate searched its own settings (a
:class:`~adaptlab.evaluation.tuning.TuningReport`: the prompt optimiser, or ``tune:``),
the untuned candidates of the same route on the same model are set aside before step 2
(:func:`untuned_siblings`): the tuned one tried their setting as its default and keeps
it unless a better one measured better on validation, so comparing both would pit a
route against itself and count one route twice in the corrections for multiple
comparisons. They stay in the tables and in the winner's tests on test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
from pydantic import ConfigDict

from adaptlab.config import CostConfig, ProfileConfig, ProjectConfig
from adaptlab.decide.curves import CurveEvidence, LearningCurves, curve_evidence, learning_curves
from adaptlab.decide.economics import Roi, break_even_requests, break_even_volume, roi
from adaptlab.decide.rule import (
    Decider,
    Option,
    RuleSettings,
    choose,
    equal_cost,
    paired_se,
    selection_bias,
    within_se,
)
from adaptlab.decide.waiting import Waiting, waiting
from adaptlab.evaluation.cost_model import CostModel, growth_factor
from adaptlab.evaluation.scoring import metric_stat
from adaptlab.evaluation.stats import (
    PairedTest,
    bootstrap_stat_ci,
    holm,
    minimum_detectable_difference,
)
from adaptlab.evaluation.summary import CandidateSummary, RunSummary, compare, selection_pair

Kind = Literal[
    "significant",
    "best-estimate",
    "lowest-expected-cost",
    "cheapest-within-noise",
    "faster-within-noise",
    "quicker-to-train-within-noise",
    "best-of-equal-cost",
    "only-candidate",
]
#: The kind of a tie by the measure that decided it (:data:`adaptlab.decide.rule.Decider`).
TIE_KINDS: dict[Decider, Kind] = {
    "expected-cost": "lowest-expected-cost",
    "cost": "cheapest-within-noise",
    "latency": "faster-within-noise",
    "training": "quicker-to-train-within-noise",
    "estimate": "best-of-equal-cost",
}
#: A rival is tied with the leader when not significantly below it (Holm) and within
#: this many standard errors of the paired difference; bench/selection_rule.py chose it.
TIE_SE_Z = 0.5
#: Break-evens are computed only among candidates tied with the leader or within this
#: much of its selection estimate (a fraction of the primary metric: 5 points).
QUALITY_FLOOR = 0.05
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
class Corrected:
    """The winner's selection estimate, corrected for having been chosen among ``k``.

    ``estimate`` is the figure as measured on the selection evidence (``source``: "cv",
    "val" or "test"); ``bias`` the optimism of picking the best of ``k`` noisy figures
    (:func:`adaptlab.decide.rule.selection_bias`, Tibshirani & Tibshirani 2009), so
    ``corrected = estimate - bias``. ``low``/``high`` is the selection-adjusted interval:
    the bootstrap interval at level ``1 - (1 - confidence) / k``, which keeps the
    false coverage rate of an interval for one parameter selected among ``k`` at
    ``1 - confidence`` (Benjamini & Yekutieli 2005, JASA 100:71-81, with R = 1 selected
    of m = k). All figures are fractions of the primary metric.
    """

    estimate: float
    bias: float
    low: float
    high: float
    k: int
    confidence: float
    source: str

    @property
    def corrected(self) -> float:
        return self.estimate - self.bias


@dataclass(frozen=True)
class Verdict:
    """Which candidate to use and every measured fact the choice rests on; no prose.

    ``winner`` is chosen on ``selected_on`` ("val", or "test" when some candidate has no
    validation answers; cross-validated candidates on their out-of-fold answers) by the
    rule ``kind``: "significant" (``leader``'s lead over every eligible rival is
    significant), "best-estimate" (not every lead is significant, but no rival is within
    the tie margin, so the highest estimate wins), one of the tie kinds of
    :data:`TIE_KINDS` (``tied`` holds the leader and the rivals within noise of it,
    ``decided_by`` what chose among them, ``equal_cost`` those whose cost counts as the
    cheapest's, ``cheapest`` the cheapest of them), or "only-candidate" (nothing left
    to compare). ``runner_up`` is the best eligible rival
    on the selection split (None for "only-candidate").

    ``excluded``: the candidates the profile rules out, in run order; ``all_excluded``:
    every candidate broke a limit, so none was set aside. ``selection_tests``: the leader
    against each eligible rival on the selection split, Holm-adjusted over them;
    ``test_tests``: the winner against every other candidate on test, Holm-adjusted over
    them (both keyed by the rival, in run order). ``costs``: every candidate's costs.
    ``flips``: where a tied rival's cost crosses the winner's, in ``tied`` order.
    ``break_evens``: the :attr:`comparable` candidates dearer to set up than ``baseline``
    (the comparable candidate cheapest to set up, one that trains no weights where there
    is one), where each pays back and its ROI. ``mdd``: the
    smallest difference of the primary metric (a fraction) the selection split can
    detect between the winner and its closest rival (80% power at ``alpha``), None when
    there is no rival or no spread. ``best_on_test``: the highest test figure (the
    cheaper one per month of equals). ``learning``: the stored learning curves, with
    ``curves`` the crossings of them that involve the winner (both None without points).

    ``decided_by``: among tied candidates, the measure that decided
    (:data:`adaptlab.decide.rule.Decider`; None without a tie), ``decided_ratio`` the
    leader's measure over the winner's on it (200.0: the leader's p95 is 200 times the
    winner's), ``error_cost_flip_usd`` the cost of one wrong answer above which the
    leader would have been the better buy (None when not applicable). ``corrected``:
    the winner's selection estimate corrected for selection among the compared
    candidates. ``comparable``: the candidates break-evens are computed among (tied
    with the leader or within ``quality_floor`` of its estimate).

    ``profile`` is the profile weighed against (read-only); ``alpha``, ``tie_tolerance``,
    ``negligible_usd``, ``quality_floor`` and ``tie_se_z`` the thresholds applied.
    ``waiting``: what ``profile.answers_may_wait`` changes (:class:`Waiting`: the API
    candidates' batch shares and the break-evens at both prices; the costs above are at
    batch prices when answers may wait). ``untuned``: the candidates set aside because a
    tuned candidate of their route and model stands for it, each with that candidate
    (:func:`untuned_siblings`); ``tuned`` the tuned candidates compared.
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
    decided_by: Decider | None = None
    decided_ratio: float | None = None
    error_cost_flip_usd: float | None = None
    corrected: Corrected | None = None
    comparable: tuple[str, ...] = ()
    quality_floor: float = QUALITY_FLOOR
    tie_se_z: float = TIE_SE_Z
    waiting: Waiting | None = None
    untuned: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("selection_tests", "test_tests", "costs", "untuned"):
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

    @property
    def tuned(self) -> tuple[str, ...]:
        """The tuned candidates that stand for their routes, in run order."""
        return tuple(dict.fromkeys(self.untuned.values()))

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


def untuned_siblings(candidates: list[CandidateSummary]) -> dict[str, str]:
    """The untuned candidates a tuned one stands for: name -> the tuned candidate.

    A tuned candidate (one with a :attr:`~CandidateSummary.tuning` report) stands for the
    untuned candidates of its route (prompt, rag, finetune, ...) on the same generative
    model (``llm``; None for the encoder and classical routes, which share the project's
    encoder). With several tuned candidates of one route and model, the first in run
    order stands for the untuned ones. A route without a tuned candidate keeps all its
    candidates.
    """
    best: dict[tuple[str, str | None], str] = {}
    for c in candidates:
        if c.tuning is not None:
            best.setdefault((c.route, c.llm), c.name)
    return {
        c.name: best[(c.route, c.llm)]
        for c in candidates
        if c.tuning is None and (c.route, c.llm) in best
    }


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


def _selection_scores(a: CandidateSummary, b: CandidateSummary) -> tuple[np.ndarray, np.ndarray]:
    """Per-example primary-metric scores of ``a`` and ``b`` on the selection examples
    they share, in the same order (:func:`adaptlab.evaluation.summary.selection_pair`)."""
    ca, cb = selection_pair(a, b)
    return metric_stat(a.metric)(ca), metric_stat(b.metric)(cb)


def _corrected(
    pick: CandidateSummary, pool: list[CandidateSummary], cfg: ProjectConfig
) -> Corrected:
    ev = cfg.evaluation
    stat = metric_stat(pick.metric)
    k = len(pool)
    bias = selection_bias(
        [c.sel_columns for c in pool],
        pool.index(pick),
        stat,
        resamples=min(ev.bootstrap_resamples, 500),
        seed=cfg.seed,
    )
    level = 1 - (1 - ev.confidence) / k
    ci = bootstrap_stat_ci(
        pick.sel_columns, stat, resamples=ev.bootstrap_resamples, confidence=level, seed=cfg.seed
    )
    return Corrected(
        pick.selection_ci.estimate,
        bias,
        ci.low,
        ci.high,
        k,
        ev.confidence,
        pick.selection_source,
    )


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
    eligible = [c for c in cands if c.name not in out] or cands
    untuned = untuned_siblings(eligible)
    pool = [c for c in eligible if c.name not in untuned]
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
    decided: Decider | None = None
    ratio = flip_usd = None
    if not others:
        kind: Kind = "only-candidate"
        pick = leader
    else:
        tied = [leader] + [
            c
            for c in others
            if selection[c.name].p_holm >= alpha
            and within_se(
                leader.selection_ci.estimate,
                c.selection_ci.estimate,
                paired_se(*_selection_scores(leader, c)),
                TIE_SE_Z,
            )
        ]
    if others and len(tied) == 1:
        # No rival is close enough to trade quality for cost: the leader wins, outright
        # when every lead is significant, else on its estimate (leads beyond the margin).
        significant = all(t.p_holm < alpha for t in selection.values())
        kind, pick = ("significant" if significant else "best-estimate"), leader
        tied = []
    elif others:
        requests = volume * growth_factor(months, growth)
        by_name = {c.name: c for c in tied}
        options = [
            Option(
                c.name, c.selection_ci.estimate, c.latency_p95_ms, c.fit_seconds, total(c), requests
            )
            for c in tied
        ]
        settings = RuleSettings(
            error_cost_usd=profile.error_cost_usd,
            tie_tolerance=cost.tie_tolerance,
            negligible_usd=cost.negligible_usd,
        )
        choice = choose(options, settings)
        pick = by_name[choice.winner]
        decided, ratio, flip_usd = choice.decided_by, choice.ratio, choice.error_cost_flip_usd
        low = min(total(c) for c in tied)
        if decided == "estimate" and total(pick) <= low:
            decided = "cost"  # equal estimates: the cheaper of them won
        kind = "lowest-expected-cost" if profile.error_cost_usd > 0 else TIE_KINDS[decided]
        cheap = [by_name[o.name] for o in equal_cost(options, settings)]
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
    rivals = [c for c in rest if c.name not in untuned]
    if rivals:
        closest = max(rivals, key=lambda c: c.selection_ci.estimate)
        sa, sb = _selection_scores(pick, closest)
        mdd = minimum_detectable_difference(sa - sb, alpha)
    best_on_test = max(cands, key=lambda c: (c.quality, -c.monthly_cost_usd))
    # Break-evens only among candidates of comparable quality: tied with the leader, or
    # within QUALITY_FLOOR of its estimate (a 7%-accurate baseline pays back nothing).
    tied_names = {c.name for c in tied}
    comparable = [
        c
        for c in cands
        if c.name not in untuned
        and (
            c is pick
            or c.name in tied_names
            or c.selection_ci.estimate >= leader.selection_ci.estimate - QUALITY_FLOOR
        )
    ]
    prompt_like = [c for c in comparable if not c.trains_weights] or comparable
    baseline = min(prompt_like, key=lambda c: c.cost.setup_usd)
    evens = break_evens(comparable, baseline, profile)
    by_name = {c.name: c for c in cands}
    pairs = [(by_name[b.candidate], baseline) for b in evens]
    pairs += [(by_name[f.rival], pick) for f in flips]
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
        all_excluded=bool(excluded) and len(eligible) == len(cands),
        tied=tuple(c.name for c in tied),
        equal_cost=tuple(c.name for c in cheap),
        cheapest=min(cheap, key=total).name if cheap else None,
        selection_tests=selection,
        test_tests=on_test,
        costs=costs,
        flips=tuple(flips),
        baseline=baseline.name,
        break_evens=tuple(evens),
        mdd=mdd,
        best_on_test=best_on_test.name,
        learning=learning,
        curves=None if learning is None else curve_evidence(learning, pick.name),
        profile=profile,
        alpha=alpha,
        tie_tolerance=cost.tie_tolerance,
        negligible_usd=cost.negligible_usd,
        decided_by=decided,
        decided_ratio=ratio,
        error_cost_flip_usd=flip_usd,
        corrected=_corrected(pick, pool, cfg) if len(pool) > 1 else None,
        comparable=tuple(c.name for c in comparable),
        waiting=waiting(pairs, cands, cfg, profile),
        untuned=untuned,
    )
