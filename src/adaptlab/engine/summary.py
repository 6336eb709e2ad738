"""A project's run summarised from its store and decided against the project's profile now.

:func:`summarize_project` is what the commands, the report and the Python API read: a
:class:`ProjectSummary`, the run's measurements
(:class:`~adaptlab.evaluation.summary.RunSummary`, recomputed from stored answers) with
the :class:`~adaptlab.decide.verdict.Verdict` made on them and that verdict in words
(``recommendation``, :func:`adaptlab.decide.explain.explain`)::

    summary = adaptlab.summarize_project(project)
    print(summary.recommendation.winner, summary.recommendation.reasons)
    summary.verdict.test_tests["zero-shot"].p_holm
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.config import CostConfig, ProfileConfig
from adaptlab.core.progress import ProgressSink
from adaptlab.decide.curves import LearningCurves
from adaptlab.decide.explain import Recommendation, explain
from adaptlab.decide.verdict import BreakEven, Verdict, verdict
from adaptlab.engine.project import Project
from adaptlab.evaluation.stats import PairedTest
from adaptlab.evaluation.summary import CandidateSummary, RunSummary, summarize
from adaptlab.store import RunStore


@dataclass(frozen=True, kw_only=True)
class DecidedCandidate(CandidateSummary):
    """A candidate's measurements beside the verdict made on its run.

    The paired tests are the verdict's (:attr:`Verdict.test_tests`,
    :attr:`Verdict.selection_tests`), read, not copied: ``vs_best`` is the winner
    against this candidate on test (None for the winner) and ``p_holm_test`` its
    Holm-adjusted p-value; ``vs_chosen`` the selection split's leader against it (None
    for the leader and for candidates the profile ruled out) and ``p_holm`` its
    Holm-adjusted p-value.
    """

    verdict: Verdict = field(repr=False, compare=False)

    @property
    def vs_best(self) -> PairedTest | None:
        """The winner against this candidate on test (diff = winner - this); None: the winner."""
        paired = self.verdict.test_tests.get(self.name)
        return None if paired is None else paired.test

    @property
    def p_holm_test(self) -> float | None:
        """:attr:`vs_best`'s p-value, Holm-adjusted over every candidate but the winner."""
        paired = self.verdict.test_tests.get(self.name)
        return None if paired is None else paired.p_holm

    @property
    def vs_chosen(self) -> PairedTest | None:
        """The selection split's leader against this candidate; None: not compared."""
        paired = self.verdict.selection_tests.get(self.name)
        return None if paired is None else paired.test

    @property
    def p_holm(self) -> float | None:
        """:attr:`vs_chosen`'s p-value, Holm-adjusted over the leader's eligible rivals."""
        paired = self.verdict.selection_tests.get(self.name)
        return None if paired is None else paired.p_holm


@dataclass(frozen=True, kw_only=True)
class ProjectSummary(RunSummary):
    """A run's measurements, the :class:`~adaptlab.decide.verdict.Verdict` made on them,
    and the verdict in words (:class:`~adaptlab.decide.explain.Recommendation`).

    ``candidates`` are :class:`DecidedCandidate`; the verdict's figures are also read
    under their former names: ``best`` (the winner), ``best_on_test``, ``break_even``,
    ``mdd`` and ``learning``.
    """

    candidates: Sequence[DecidedCandidate]
    verdict: Verdict
    recommendation: Recommendation

    def candidate(self, name: str) -> DecidedCandidate:
        """The candidate named ``name`` (StopIteration when there is none)."""
        return next(c for c in self.candidates if c.name == name)

    @property
    def best(self) -> str:
        """The winner's name."""
        return self.verdict.winner

    @property
    def best_on_test(self) -> str:
        """The highest-scoring candidate on test, for comparison with the winner."""
        return self.verdict.best_on_test

    @property
    def break_even(self) -> list[BreakEven]:
        """Where each candidate dearer to set up than the baseline pays back."""
        return list(self.verdict.break_evens)

    @property
    def mdd(self) -> float | None:
        """The minimum detectable difference of the selection split (a fraction)."""
        return self.verdict.mdd

    @property
    def learning(self) -> LearningCurves | None:
        """``adaptlab curve``'s points on this run's split, fitted and crossed; None: none."""
        return self.verdict.learning


def _init_values(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def with_verdict(run: RunSummary, v: Verdict) -> ProjectSummary:
    """``run`` with verdict ``v`` (made on it) and ``v`` in words."""
    values = _init_values(run)
    values["candidates"] = [DecidedCandidate(**_init_values(c), verdict=v) for c in run.candidates]
    return ProjectSummary(**values, verdict=v, recommendation=explain(v, run))


def decide_run(
    run: RunSummary, profile: ProfileConfig | None = None, cost: CostConfig | None = None
) -> ProjectSummary:
    """``run`` decided under ``profile`` and ``cost`` (default: those it was summarised
    under, ``run.cfg``)."""
    return with_verdict(run, verdict(run, profile or run.cfg.profile, cost or run.cfg.cost))


def summarize_run(
    store: RunStore,
    run_id: str | None = None,
    *,
    llm_cache: str | Path | None = None,
    progress: ProgressSink | None = None,
    profile: ProfileConfig | None = None,
    cost: CostConfig | None = None,
    learning: bool = True,
) -> ProjectSummary:
    """A run of ``store`` (the latest finished by default) summarised and decided.

    The arguments are :func:`~adaptlab.evaluation.summary.summarize`'s: ``profile`` and
    ``cost`` replace those the run was made with, for the prices and for the verdict.
    """
    run = summarize(
        store,
        run_id,
        llm_cache=llm_cache,
        progress=progress,
        profile=profile,
        cost=cost,
        learning=learning,
    )
    return decide_run(run)


def summarize_project(
    project: Project, run_id: str | None = None, *, learning: bool = True
) -> ProjectSummary:
    """The summary of a project's latest (or a given) run, recomputed from the store and
    decided against the project's profile and costs now.

    A generation task scored by an LLM judge grades through the project's response
    cache, so summarising again sends no request twice.
    """
    with RunStore(project.store) as store:
        return summarize_run(
            store,
            run_id,
            llm_cache=project.llm_cache_path,
            profile=project.config.profile,
            cost=project.config.cost,
            learning=learning,
        )
