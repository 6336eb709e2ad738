"""The verdict in words: reasons, rules of thumb and what would change it.

Everything here reads a :class:`~adaptlab.decide.verdict.Verdict` and the run's
measurements (:class:`~adaptlab.evaluation.summary.RunSummary`) and writes sentences;
nothing is decided here. :func:`explain` gathers them into a :class:`Recommendation`,
which the terminal, the HTML report and the Python API show:

- the reasons: the rule that chose the winner with its figures, the winner's test
  figures, latency and monthly cost, and a warning when it was chosen on test;
- the seeds' rules of thumb (PRODUCT.md) the profile triggers, stated as priors
  beside the verdict with whether the measurement agrees (:func:`profile_rules`);
- "what would change it": the break-even volumes against the tied rivals (where the
  cost order flips), what answers that may wait buy (each break-even at the standard
  and the batch APIs' price, :func:`waiting_sentences`), a rival the profile ruled out
  that measured better, the
  smallest difference the selection split can detect, and the learning-curve
  crossings that involve the winner (:func:`curve_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adaptlab.config import ProfileConfig
from adaptlab.core.format import (
    and_list,
    ms,
    number,
    p_value,
    pct,
    plural,
    sig,
    usd,
    volume_text,
)
from adaptlab.data.validate import MIN_FINETUNE_EXAMPLES, MIN_FINETUNE_EXAMPLES_GOOD, SWEET_SPOT
from adaptlab.decide.curves import Crossing, CurveEvidence, LearningCurves, curve_evidence
from adaptlab.decide.verdict import Exclusion, Verdict
from adaptlab.decide.waiting import Waiting
from adaptlab.evaluation.cost_model import growth_factor
from adaptlab.evaluation.stats import PairedTest
from adaptlab.evaluation.summary import CandidateSummary, RunSummary, p_bound

HIGH_VOLUME = 100_000  # requests/month where the seeds' rule of thumb flips to fine-tuning
FINETUNE_ROUTES = {"finetune", "finetune+rag"}
RAG_ROUTES = {"rag", "finetune+rag"}

TEST_FALLBACK = (
    "Chosen on the test split: some results hold no validation answers (from an "
    "adaptlab before 0.10, or data.val_size 0), so the winner's test figure is "
    "optimistic; rerun with --force to choose on validation."
)


@dataclass(frozen=True)
class Recommendation:
    """A :class:`~adaptlab.decide.verdict.Verdict` in words, in the order it is shown.

    ``winner``, ``kind`` and ``selected_on`` are the verdict's; ``reasons`` the sentences
    behind the choice, ``rules`` the rules of thumb the profile triggers, ``changes``
    what would change the decision, ``excluded`` why each ruled-out candidate is.
    """

    winner: str
    kind: str
    reasons: list[str]
    rules: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # what would change the decision
    excluded: dict[str, str] = field(default_factory=dict)  # candidate -> why ruled out
    selected_on: str = "val"


def explain(v: Verdict, summary: RunSummary) -> Recommendation:
    """The sentences of verdict ``v`` on ``summary``'s candidates."""
    n_train = summary.split.get("train", 0) + summary.split.get("val", 0)
    return Recommendation(
        v.winner,
        v.kind,
        reasons(v, summary),
        profile_rules(v.profile, summary.task, n_train, summary.candidate(v.winner)),
        changes(v, summary),
        {e.candidate: exclusion_text(e, v.volume) for e in v.excluded},
        v.selected_on,
    )


def _where(selected_on: str) -> str:
    return "validation" if selected_on == "val" else "test"


def evidence_text(c: CandidateSummary) -> str:
    """What ``c``'s choice rests on: "5-fold cross-validation over 1,100 examples",
    "100 validation examples" or "200 test examples"."""
    if c.selection_source == "cv":
        return f"{c.cv_folds}-fold cross-validation over {c.selection_n:,} examples"
    where = "validation" if c.selection_source == "val" else "test"
    return f"{c.selection_n:,} {where} examples"


def _seconds(x: float) -> str:
    if x < 60:
        return f"{number(x, 2)} s"
    if x < 3600:
        return f"{x / 60:.0f} min"
    return f"{x / 3600:.1f} h"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def exclusion_text(e: Exclusion, volume: int) -> str:
    """Why ``e.candidate`` is ruled out, as a clause after its name ("it ..."); ``volume``
    is the forecast (requests/month) a monthly budget was checked at."""
    if e.limit == "data_may_leave":
        return "sends inputs to a hosted API, and the profile says data may not leave"
    if e.limit == "latency_budget_ms":
        return (
            f"has a p95 latency of {ms(float(e.measured))}, over the budget of "
            f"{ms(float(e.allowed))}"
        )
    return (
        f"costs {usd(float(e.measured))} a month at {volume:,} requests, over the "
        f"budget of {usd(float(e.allowed))}"
    )


def _p_text(test: PairedTest, adjusted: float, resamples: int) -> str:
    name = "McNemar" if test.name.startswith("mcnemar") else "paired bootstrap"
    bound = p_bound(test, resamples)
    if bound is not None:
        return f"{name} p < {sig(bound)}"
    return f"{name} p {_p_words(test.p_value)}, Holm-adjusted {p_value(adjusted)}"


def _p_words(p: float) -> str:
    text = p_value(p)
    return text if text.startswith("<") else f"= {text}"


def facts(c: CandidateSummary, v: Verdict, summary: RunSummary) -> list[str]:
    """The measured figures of the pick, in the order the reader needs them: its test
    figure (when chosen on validation), then latency, agreement and monthly cost."""
    fmt = c.metric_info.fmt
    ci = c.quality_ci
    conf = f"{summary.cfg.evaluation.confidence:.0%}"
    out = []
    if v.selected_on == "val":
        out.append(
            f"On the test split, used once to report: {fmt(ci.estimate)} "
            f"({conf} CI {fmt(ci.low)}–{fmt(ci.high)}, n = {c.n:,})."
        )
    parts = []
    if c.latency_p50_ms == c.latency_p50_ms:
        parts.append(f"latency p50 {ms(c.latency_p50_ms)}, p95 {ms(c.latency_p95_ms)}")
    if c.agreement is not None:
        parts.append(f"{pct(c.agreement)} of repeated answers agree")
    parts.append(f"{usd(v.costs[c.name].monthly_usd)} a month at {v.volume:,} requests")
    out.append(c.name + ": " + "; ".join(parts) + ".")
    return out


def reasons(v: Verdict, summary: RunSummary) -> list[str]:
    """Why the winner: the rule that chose it with its figures, then :func:`facts`, then
    a warning when it was chosen on test."""
    cfg = summary.cfg
    best = summary.candidate(v.leader)
    info = best.metric_info
    fmt = info.fmt
    where = _where(v.selected_on)
    resamples = cfg.evaluation.bootstrap_resamples
    pick = summary.candidate(v.winner)
    if v.kind == "only-candidate" and v.untuned:
        out = [
            f"{best.name} is the only route left to compare ({fmt(best.quality)}): "
            f"{and_list(sorted(v.untuned))} {'is its' if len(v.untuned) == 1 else 'are its'} "
            "untuned setting, tried as its default; no other route was compared, so this "
            "is no recommendation between routes (add candidates of other routes).",
        ]
    elif v.kind == "only-candidate":
        out = [
            f"{best.name} is the only candidate left to compare ({fmt(best.quality)}); "
            "nothing was compared, so this is no recommendation (run all candidates).",
        ]
    elif v.kind == "significant":
        assert v.runner_up is not None
        runner_up = summary.candidate(v.runner_up)
        paired = v.selection_tests[runner_up.name]
        ci = best.selection_ci
        n = len(v.selection_tests)
        out = [
            f"{best.name} has the highest {info.name} on {where}, {fmt(ci.estimate)} "
            f"({cfg.evaluation.confidence:.0%} CI {fmt(ci.low)}–{fmt(ci.high)}), "
            f"significantly above the runner-up {runner_up.name} at "
            f"{fmt(runner_up.selection_ci.estimate)} "
            f"({_p_text(paired.test, paired.p_holm, resamples)}; "
            f"{n} comparison{'s' if n > 1 else ''})."
        ]
    elif v.kind == "best-estimate":
        assert v.runner_up is not None
        runner_up = summary.candidate(v.runner_up)
        paired = v.selection_tests[runner_up.name]
        ci = best.selection_ci
        out = [
            f"{best.name} has the highest {info.name}, {fmt(ci.estimate)} "
            f"({cfg.evaluation.confidence:.0%} CI {fmt(ci.low)}–{fmt(ci.high)}, "
            f"{evidence_text(best)}); its lead over {runner_up.name} "
            f"({fmt(runner_up.selection_ci.estimate)}) is not significant "
            f"({_p_text(paired.test, paired.p_holm, resamples)}), but no rival is within "
            f"{v.tie_se_z:g} standard error of it, so its estimate decides (a closer rival "
            "would be weighed by cost, latency and training time)."
        ]
    else:
        out = [_tie_reason(v, summary, best, pick)]
    out += facts(pick, v, summary)
    out += tuned_sentences(v, summary)
    w = v.waiting
    if w is not None and w.may_wait and w.shares:
        out.append(
            f"Answers may wait (profile.answers_may_wait): {and_list(sorted(w.shares))} "
            f"{'is' if len(w.shares) == 1 else 'are'} priced at the batch APIs' rate, "
            f"{_share_text(w)} the standard price, for answers within 24 hours."
        )
    if v.selected_on == "test":
        out.append(TEST_FALLBACK)
    return out


def tuned_sentences(v: Verdict, summary: RunSummary) -> list[str]:
    """How the routes were compared when some candidates tuned their own settings: which
    tuned candidate stands for which untuned ones, and the routes compared as configured.
    Empty when no candidate was tuned."""
    tuned = [c for c in summary.candidates if c.tuning is not None]
    if not tuned:
        return []
    stands = {t: [u for u, by in v.untuned.items() if by == t] for t in v.tuned}
    parts = [f"{t} for {and_list(us)}" for t, us in stands.items()]
    text = (
        "Routes are compared at their best, by their tuned candidates "
        f"({and_list([c.name for c in tuned])})"
    )
    if parts:
        text += (
            f"; set aside as the same route on the same model: {'; '.join(parts)} "
            "(each search tried that setting as its default on validation)"
        )
    plain = sorted(
        {c.route for c in summary.candidates if c.tuning is None and c.name not in v.untuned}
    )
    if plain:
        text += f"; not tuned, compared as configured: the {and_list(plain)} route"
        text += "s" if len(plain) > 1 else ""
    return [text + "."]


def _share_text(w: Waiting) -> str:
    shares = set(w.shares.values())
    if shares == {0.5}:
        return "half"
    return "/".join(f"{s:.0%}" for s in sorted(shares)) + " of"


def _volume(x: float | None) -> str:
    return "none (they never cross)" if x is None else f"~{volume_text(x)}"


def waiting_sentences(w: Waiting | None) -> list[str]:
    """What answers that may wait buy, one sentence per break-even it moves: from the
    standard to the batch price when they may not wait yet, or the other way."""
    if w is None or not w.shares:
        return []
    out = []
    share = _share_text(w)
    for b in w.break_evens:
        if b.standard == b.batch:
            continue
        pair = f"the break-even of {b.candidate} against {b.baseline}"
        if w.may_wait:
            out.append(
                f"answers that may wait cost {share} the price (batch APIs, within 24 h): "
                f"{pair} is {_volume(b.batch)} requests/month, against {_volume(b.standard)} "
                "if answers must come at once (adaptlab decide --no-answers-may-wait)"
            )
        else:
            out.append(
                f"if answers may wait (batch APIs answer within 24 h at {share} the price: "
                f"adaptlab decide --answers-may-wait), {pair} moves from "
                f"{_volume(b.standard)} to {_volume(b.batch)} requests/month"
            )
    return out


def _tie_reason(
    v: Verdict, summary: RunSummary, best: CandidateSummary, pick: CandidateSummary
) -> str:
    """The reason of a tie: within noise of whom, and what the pick costs beside them."""
    info = best.metric_info
    months, volume = v.months, v.volume

    def total(name: str) -> float:
        return v.costs[name].total_usd

    tied_names = ", ".join(name for name in v.tied if name != pick.name)
    vs = ""
    if pick is not best:
        paired = v.selection_tests[pick.name]
        resamples = summary.cfg.evaluation.bootstrap_resamples
        vs = f" ({_p_text(paired.test, paired.p_holm, resamples)} against {best.name})"
    hosting = (
        f", {usd(pick.cost.fixed_monthly_usd)} a month for its server"
        if pick.cost.fixed_monthly_usd > 0
        else ", no server of its own"
        if pick.cost.kind == "self-hosted"
        else ""
    )
    cost_text = (
        f"{usd(total(pick.name))} over {plural(months, 'month')} at {volume:,} requests/month "
        f"({usd(pick.cost.per_request_usd * 1000)} per 1,000 requests, "
        f"{usd(pick.cost.setup_usd)} setup{hosting})"
    )
    better = "more accurate one" if info.key == "accuracy" else f"one with the higher {info.name}"
    low = min(total(name) for name in v.tied)
    if v.decided_by in ("latency", "training"):
        cost_reason = "it is chosen for " + _measured_reason(v, pick, best)
    elif v.kind == "lowest-expected-cost":
        cost_reason = "it has " + _expected_reason(v, pick, best)
    elif total(pick.name) > low:
        assert v.cheapest is not None
        if total(pick.name) - low <= v.negligible_usd:
            why = (
                f"less than {usd(v.negligible_usd)} more over {plural(months, 'month')}, "
                "which no budget notices"
            )
        else:
            why = f"within {v.tie_tolerance:.0%} of it, which is measurement noise"
        cost_reason = (
            f"its cost, {cost_text}, is {why} (the cheapest is {v.cheapest}, "
            f"{usd(total(v.cheapest))}), so the {better} is recommended"
        )
    else:
        cost_reason = f"it is the cheapest of them: {cost_text}"
    return (
        f"No candidate is significantly better than all others: {pick.name} "
        f"({info.fmt(pick.selection_ci.estimate)} {info.name}, {evidence_text(pick)}) is "
        f"within noise of {tied_names}{vs}, and {cost_reason}."
    )


def _measured_reason(v: Verdict, pick: CandidateSummary, best: CandidateSummary) -> str:
    """Why a faster or quicker-to-train candidate won a tie: the ratios, as measured."""
    parts = []
    if pick.latency_p95_ms > 0 and best.latency_p95_ms == best.latency_p95_ms:
        ratio = best.latency_p95_ms / pick.latency_p95_ms
        if ratio >= 2:
            parts.append(
                f"{_times(ratio)} lower p95 latency ({ms(pick.latency_p95_ms)} against "
                f"{ms(best.latency_p95_ms)} for {best.name})"
            )
    if pick.fit_seconds > 0 and best.fit_seconds / pick.fit_seconds >= 2:
        parts.append(
            f"{_times(best.fit_seconds / pick.fit_seconds)} faster to train "
            f"({_seconds(pick.fit_seconds)} against {_seconds(best.fit_seconds)})"
        )
    if not parts:  # the floors made the ratio count; say the measure that decided
        parts.append(f"lower {'p95 latency' if v.decided_by == 'latency' else 'training time'}")
    text = ", ".join(parts)
    if v.decided_by == "latency":
        text += "; their costs count as equal"
    return text


def _expected_reason(v: Verdict, pick: CandidateSummary, best: CandidateSummary) -> str:
    """Why a candidate won a tie by expected total cost with the error cost known."""
    err = v.profile.error_cost_usd
    requests = v.volume * growth_factor(v.months, v.growth)

    def expected(c: CandidateSummary) -> float:
        return v.costs[c.name].total_usd + requests * (1 - c.selection_ci.estimate) * err

    text = (
        f"the lowest expected total over {plural(v.months, 'month')} with a wrong answer at "
        f"{usd(err)}: {usd(expected(pick))}"
    )
    if pick is not best:
        text += f" against {usd(expected(best))} for {best.name}"
    return text


def changes(v: Verdict, summary: RunSummary) -> list[str]:
    """What would change the decision, in order: the volumes where a tied rival becomes
    cheaper (the last tied rival first), each break-even at the other price tier
    (:func:`waiting_sentences`), the ruled-out rivals that measured higher, the
    note that every candidate breaks the profile, the minimum detectable difference, and
    the learning-curve crossings (:func:`curve_sentences`)."""
    best = summary.candidate(v.leader)
    info = best.metric_info
    where = _where(v.selected_on)
    out = [
        f"{flip.side} ~{volume_text(flip.monthly_volume)} requests/month {flip.rival} is "
        f"cheaper at equal {info.name} (break-even over {plural(v.months, 'month')})"
        for flip in reversed(v.flips)
    ]
    out += waiting_sentences(v.waiting)
    if v.error_cost_flip_usd is not None and v.winner != v.leader:
        out.append(
            f"if one wrong answer costs you more than {usd(v.error_cost_flip_usd)}, "
            f"{v.leader}'s higher estimate is worth its cost: set profile.error_cost_usd "
            "(adaptlab decide asks) and the choice is made by expected total cost"
        )
    for e in v.excluded:
        c = summary.candidate(e.candidate)
        if c.selection_ci.estimate > best.selection_ci.estimate:
            out.append(
                f"{c.name} measured higher ({info.fmt(c.selection_ci.estimate)} on {where}) "
                f"but is ruled out: it {exclusion_text(e, v.volume)}; relaxing that would "
                "bring it back"
            )
    if v.all_excluded:
        out.append("every candidate breaks the profile's limits; none is ruled out")
    if v.mdd is not None:
        win = summary.candidate(v.winner)
        out.append(
            f"with {plural(win.selection_n, where + ' example')}, differences under "
            f"~{100 * v.mdd:.0f} points of {win.metric_info.name} cannot be told apart "
            f"(80% power, alpha {v.alpha:g})"
        )
    if v.curves is not None:
        out.extend(curve_sentences(v.curves))
    return out


def _interval(x: Crossing) -> str:
    if x.low is None or x.high is None:
        return "no interval"
    return f"95% interval {x.low:,}–{x.high:,}"


def curve_sentences(e: CurveEvidence) -> list[str]:
    """The learning-curve lines of "what would change it" (see
    :func:`~adaptlab.decide.curves.curve_evidence` for which crossings count)."""
    out = []
    for x in e.passing:
        assert x.n is not None
        out.append(
            f"with about {plural(x.n - e.n_train, 'more labelled example')} ({x.n:,} in "
            f"all), {x.candidate} is expected to pass {e.winner} ({_interval(x)}; "
            f"extrapolated from the learning curve, {x.found:.0%} of refits cross)"
        )
    last = e.overtaken
    if last is not None:
        assert last.n is not None
        out.append(
            f"{e.winner} overtook {last.rival} at ~{last.n:,} training examples "
            f"({_interval(last)}): with fewer labelled examples than that, {last.rival} "
            "would do as well"
        )
    return out


def curve_changes(curves: LearningCurves, winner: str) -> list[str]:
    """Sentences for "what would change it" from the crossings that involve ``winner``."""
    return curve_sentences(curve_evidence(curves, winner))


def _data_rule(n_train: int) -> str:
    lo, hi = SWEET_SPOT
    if n_train < MIN_FINETUNE_EXAMPLES:
        return (
            f"{plural(n_train, 'training example')} is below the {MIN_FINETUNE_EXAMPLES}–"
            f"{MIN_FINETUNE_EXAMPLES_GOOD} that fine-tuning needs, so prompting is the prior"
        )
    if n_train < lo:
        return (
            f"{plural(n_train, 'training example')} clears the {MIN_FINETUNE_EXAMPLES}–"
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


def profile_rules(
    profile: ProfileConfig, task: str, n_train: int, winner: CandidateSummary
) -> list[str]:
    """The seeds' rules of thumb that ``profile`` triggers, each with whether ``winner``
    follows it (a prior, stated beside the measurement, never instead of it).

    ``task`` is the project's task; ``n_train`` the labelled examples (train + val).
    """
    p = profile
    route = winner.route
    rules = [_data_rule(n_train), _volume_rule(p.monthly_requests)]

    def agrees(ok: bool) -> str:
        return " — the recommendation follows it" if ok else " — the measurement overrules it"

    if p.knowledge_change in ("monthly", "weekly", "daily"):
        rules.append(
            f"knowledge changes {p.knowledge_change}: RAG keeps answers current without "
            f"retraining{agrees(route in RAG_ROUTES or task == 'classification')}"
        )
    if p.citations_needed:
        rules.append(f"answers must cite sources: that takes RAG{agrees(route in RAG_ROUTES)}")
    if p.hallucination_tolerance == "low" and task != "classification":
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


def selection_line(v: Verdict, summary: RunSummary) -> str:
    """The chosen candidate's figure on the selection split and on test, beside the best
    candidate on test: how far choosing without peeking landed from the best."""
    win = summary.candidate(v.winner)
    top = summary.candidate(v.best_on_test or win.name)
    fmt = summary.metric_info.fmt
    where = _where(v.selected_on)
    if win.selection_source == "cv":
        where = f"{win.cv_folds}-fold cross-validation"
    text = (
        f"Chosen on {where}: {win.name} ({fmt(win.selection_ci.estimate)} on {where}, "
        f"{fmt(win.quality)} on test)"
    )
    c = v.corrected
    if c is not None and c.bias > 0:
        text += (
            f"; corrected for choosing among {c.k}: {fmt(c.corrected)} (the optimism of the "
            f"best of {c.k} noisy figures, {100 * c.bias:.1f} points, removed: Tibshirani & "
            f"Tibshirani 2009), {c.confidence:.0%} selection-adjusted interval "
            f"{fmt(c.low)}–{fmt(c.high)} (Benjamini & Yekutieli 2005)"
        )
    if top is win:
        return text + "; it is also the best on test."
    gap = 100 * (top.quality - win.quality)
    return text + f"; best on test: {top.name} ({fmt(top.quality)}, {gap:.1f} points higher)."
