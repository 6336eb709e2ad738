"""Sentences the HTML report and the terminal share, read from a run's verdict.

Where a candidate stands against the winner on test (:func:`standing_on_test`), why a
candidate that is significantly better than the winner on test was still not chosen
(:func:`not_chosen_reason`), and the one line that names every candidate timed on a
busy machine (:func:`loaded_timing_line`). Nothing is decided here: the verdict
(:mod:`adaptlab.decide.verdict`) holds every figure, and these only put it in words.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from adaptlab.core.format import and_list, ms, number, p_value, plural, sig, usd
from adaptlab.core.languages import language_name
from adaptlab.data.language import DataLanguage
from adaptlab.decide.explain import exclusion_text
from adaptlab.decide.verdict import Paired, Verdict
from adaptlab.evaluation.summary import CandidateSummary, RunSummary, p_bound

#: Where a candidate stands against the winner on test: the winner itself, significantly
#: worse than it, significantly better than it, or within noise of it (after Holm).
Standing = Literal["winner", "worse", "better", "within-noise"]


def standing_on_test(v: Verdict, name: str) -> Standing:
    """Where candidate ``name`` stands against the winner on test.

    Read from :attr:`Verdict.test_tests` (``diff`` is the winner minus ``name``):
    "worse" when the winner is significantly better after Holm's correction, "better"
    when ``name`` is significantly better than the winner, else "within-noise".
    """
    paired = v.test_tests.get(name)
    if paired is None:
        return "winner"
    if paired.p_holm >= v.alpha or paired.test.diff == 0:
        return "within-noise"
    return "worse" if paired.test.diff > 0 else "better"


def p_text(paired: Paired, resamples: int) -> str:
    """The Holm-adjusted p-value of a paired test as the tables show it ("0.004",
    "< 0.001"), or the resolution of a bootstrap p of 0 ("< 0.01" with 200 resamples)."""
    bound = p_bound(paired.test, resamples)
    if bound is not None:
        return f"< {sig(bound)}"
    return p_value(paired.p_holm)


def _resamples(summary: RunSummary) -> int:
    return int(summary.cfg.evaluation.bootstrap_resamples)


def _better_word(summary: RunSummary) -> str:
    info = summary.metric_info
    return "more accurate" if info.key == "accuracy" else f"better in {info.name}"


#: What a candidate can be chosen on (:attr:`CandidateSummary.selection_source`), in words.
SOURCES = {"cv": "cross-validation", "val": "validation", "test": "test"}


def selection_source(c: CandidateSummary) -> str:
    """What ``c`` was chosen on: "cv" (out-of-fold answers over train+val), "val" or
    "test"; the run's split where the summary says no more."""
    return str(getattr(c, "selection_source", c.selected_on))


def selection_evidence(c: CandidateSummary) -> str:
    """The evidence ``c`` was chosen on, counted: "55 validation examples", or "1,100
    examples by 5-fold cross-validation"."""
    source = selection_source(c)
    if source == "cv":
        folds = int(getattr(c, "cv_folds", 0) or 0)
        how = f"{folds}-fold cross-validation" if folds else "cross-validation"
        return f"{plural(c.selection_n, 'example')} by {how}"
    return plural(c.selection_n, f"{SOURCES.get(source, source)} example")


def _where(*cands: CandidateSummary) -> str:
    """The evidence candidates were chosen on, in words: "validation", or
    "cross-validation" for candidates refitted over train+val ("cv"), or both."""
    words = [SOURCES[s] for s in SOURCES if s in {selection_source(c) for c in cands}]
    return " and ".join(words) or "validation"


def not_chosen_reason(v: Verdict, summary: RunSummary, name: str) -> str:
    """Why candidate ``name`` is not the recommendation although it beats the winner on
    test: a clause to follow "not chosen:".

    In order: the task profile rules it out (:meth:`Verdict.exclusion`); a tuned
    candidate stands for its route (:attr:`Verdict.untuned`); on the
    selection evidence it was within noise of the winner (:attr:`Verdict.tied`), and
    what the rule weighs among tied candidates favoured the winner (:attr:`Verdict.kind`:
    the total cost, the p95 latency, the training time, the expected cost with errors,
    or, all else equal, the selection figure); the selection leader was ahead of it by
    more than the tie margin (significantly or not, as its Holm-adjusted p says). The
    test split is used once, to report: choosing on it would make the winner's test
    figure optimistic.
    """
    fmt = summary.metric_info.fmt
    win, rival = summary.candidate(v.winner), summary.candidate(name)
    where = _where(win, rival)
    sel_w, sel_r = fmt(win.selection_ci.estimate), fmt(rival.selection_ci.estimate)
    excluded = v.exclusion(name)
    if excluded is not None:
        return f"the task profile rules it out: {name} {exclusion_text(excluded, v.volume)}"
    if name in v.untuned:
        return (
            f"routes are compared at their best: the tuned {v.untuned[name]} stands for "
            f"{name}'s route, having tried {name}'s setting as its default on validation"
        )
    if name in v.tied:
        noise = (
            f"on {where}, where candidates are chosen, the two were within noise "
            f"({name} {sel_r}, {win.name} {sel_w})"
        )
        total_w, total_r = v.costs[win.name].total_usd, v.costs[name].total_usd
        if name not in v.equal_cost and total_w < total_r:
            return (
                f"{noise}, and {win.name} costs less: {usd(total_w)} against {usd(total_r)} "
                f"over {v.months} months at {v.volume:,} requests/month"
            )
        if v.kind == "faster-within-noise":
            return (
                f"{noise}, and {win.name} answers faster: p95 {ms(win.latency_p95_ms)} "
                f"against {ms(rival.latency_p95_ms)}"
            )
        if v.kind == "quicker-to-train-within-noise":
            return (
                f"{noise}, and {win.name} trains quicker: {number(win.fit_seconds)} s "
                f"against {number(rival.fit_seconds)} s"
            )
        if v.kind == "lowest-expected-cost":
            return (
                f"{noise}, and {win.name} has the lower expected cost over {v.months} months, "
                "wrong answers priced at profile.error_cost_usd"
            )
        return (
            f"{noise}, nothing else the rule weighs told them apart (cost, latency, "
            f"training time), and {win.name} scored {sel_w} there against {sel_r}"
        )
    lead = v.selection_tests.get(name)
    if lead is None:
        return f"on {where}, where candidates are chosen, it scored {sel_r} against {sel_w}"
    leader = summary.candidate(v.leader)
    sel_l = fmt(leader.selection_ci.estimate)
    p = f"Holm-adjusted p {_p_clause(lead, _resamples(summary))}"
    margin = "" if lead.p_holm < v.alpha else ", more than the margin of a tie"
    ahead = "significantly ahead" if lead.p_holm < v.alpha else "ahead"
    if v.leader == v.winner:
        return (
            f"on {where}, where candidates are chosen, {win.name} was {ahead} "
            f"({sel_w} against {sel_r}, {p}{margin}); {where} and test disagree, which "
            "more labelled examples would settle"
        )
    return (
        f"on {where}, where candidates are chosen, {leader.name} was {ahead} of it "
        f"({sel_l} against {sel_r}, {p}{margin})"
    )


def _p_clause(paired: Paired, resamples: int) -> str:
    """:func:`p_text` to follow a "p": "= 0.004" or "< 0.001"."""
    text = p_text(paired, resamples)
    return text if text.startswith("<") else f"= {text}"


def better_than_winner(v: Verdict, summary: RunSummary) -> list[str]:
    """A sentence per candidate significantly better than the winner on test: its test
    figure against the winner's, the paired test, and why it was not chosen
    (:func:`not_chosen_reason`)."""
    fmt = summary.metric_info.fmt
    win = summary.candidate(v.winner)
    resamples = _resamples(summary)
    out = []
    for name, paired in v.test_tests.items():
        if standing_on_test(v, name) != "better":
            continue
        rival = summary.candidate(name)
        test = "McNemar" if paired.test.name.startswith("mcnemar") else "paired bootstrap"
        out.append(
            f"{name} is significantly {_better_word(summary)} than the winner on test "
            f"({fmt(rival.quality)} against {fmt(win.quality)}, {test} p "
            f"{_p_clause(paired, resamples)} after Holm's correction), but was not chosen: "
            f"{not_chosen_reason(v, summary, name)}."
        )
    return out


def loaded_timing_line(candidates: Sequence[CandidateSummary]) -> str | None:
    """One sentence naming every candidate timed while other processes used much of the
    machine (:attr:`CandidateSummary.loaded_warning`), with the share they used and the
    command that times them again; None when every timing was taken on a quiet machine.
    """
    loaded = [c for c in candidates if c.loaded_warning is not None]
    if not loaded:
        return None
    shares = sorted(c.other_cpu_share or 0.0 for c in loaded)
    low, high = round(100 * shares[0]), round(100 * shares[-1])
    share = f"{low}%" if low == high else f"{low}–{high}%"
    names = and_list([c.name for c in loaded])
    command = "adaptlab run --force " + " ".join(f"-c {shlex.quote(c.name)}" for c in loaded)
    if len(loaded) == 1:
        return (
            f"other processes used {share} of the machine's CPU while {names} was timed, so "
            f"its latency and CPU cost read high; rerun it on a quiet machine: {command}"
        )
    return (
        f"other processes used {share} of the machine's CPU while {names} were timed, so "
        f"their latency and CPU cost read high; rerun them on a quiet machine: {command}"
    )


def prompt_language_text(info: Mapping[str, Any]) -> str | None:
    """The language of a prompted candidate's prompt, from its result's info: "German
    (de; detected in 94% of 1,000 examples); built-in template in German", with the
    English fallback said ("… French (fr; set by …); no built-in template in French,
    the English one is used"), or "its own template" for a user's file. None for a
    result stored before the language was recorded.
    """
    raw = info.get("data_language")
    if not isinstance(raw, dict):
        return None
    try:
        lang = DataLanguage(
            code=str(raw["code"]),
            source=raw["source"],
            share=raw.get("share"),
            n=int(raw.get("n") or 0),
        )
    except (KeyError, TypeError, ValueError):
        return None
    used = info.get("template_language")
    if used is None:
        return f"data in {lang.describe()}; its own template, used as written"
    if used == lang.code:
        return f"data in {lang.describe()}; built-in template in {language_name(str(used))}"
    return (
        f"data in {lang.describe()}; no built-in template in {language_name(lang.code)}, "
        f"so the {language_name(str(used))} one is used"
    )
