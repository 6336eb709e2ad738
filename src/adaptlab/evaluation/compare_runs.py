"""Two runs of one project side by side: each candidate's primary metric in both, the
change, and a paired test when both runs answered the same test examples.

The test is :func:`adaptlab.evaluation.summary.compare`, the one that compares
candidates within a run (McNemar's where every example scores 0 or 1, else a paired
bootstrap), applied to one candidate's answers in run B against its answers in run A.
The examples are matched by id, input and reference, so a reordered split still
pairs; a changed split (other data, another seed or test size) gets no test.

A run links stored results by key, and ``adaptlab run --force`` overwrites a key's
answers in place: two runs that link the same result hold the same answers (the
older run's are gone), which :attr:`CandidateChange.same_result` says.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from adaptlab.config import ProjectConfig
from adaptlab.evaluation.stats import PairedTest, holm
from adaptlab.evaluation.summary import CandidateSummary, RunSummary, compare

if TYPE_CHECKING:
    from adaptlab.store import RunStore


@dataclass(frozen=True)
class CandidateChange:
    """One candidate across two runs; ``a`` or ``b`` is None where it was not in that run.

    ``test`` is run B's answers against run A's on the same test examples: its ``diff``
    is B - A, its ``a_only`` counts examples where B did better and ``b_only`` those
    where A did. It is None where there is no test, with ``untested`` saying why.
    """

    name: str
    a: CandidateSummary | None
    b: CandidateSummary | None
    test: PairedTest | None = None
    p_holm: float | None = None  # test's p-value, Holm-adjusted over the tests made
    untested: str | None = None  # why there is no test, for a candidate in both runs

    @property
    def diff(self) -> float | None:
        """Primary metric on test in run B minus run A (a fraction); None unless in both."""
        if self.a is None or self.b is None:
            return None
        return self.b.quality - self.a.quality

    @property
    def same_result(self) -> bool:
        """Both runs link the same stored result, so they hold the very same answers."""
        return self.a is not None and self.b is not None and self.a.key == self.b.key


@dataclass(frozen=True)
class RunComparison:
    """Runs ``a`` and ``b`` and every candidate of either: A's order, then B's new ones."""

    a: RunSummary
    b: RunSummary
    changes: list[CandidateChange]

    @property
    def only_a(self) -> list[str]:
        return [c.name for c in self.changes if c.b is None]

    @property
    def only_b(self) -> list[str]:
        return [c.name for c in self.changes if c.a is None]

    @property
    def same_metric(self) -> bool:
        """Whether both runs rank by the same primary metric (else no figure compares)."""
        return self.a.metric == self.b.metric


def _pairing(store: RunStore, a: CandidateSummary, b: CandidateSummary) -> np.ndarray | None:
    """For each of ``a``'s test examples in order, the row of the same example among
    ``b``'s; None when the two did not answer the same examples."""
    ex_a = [(r.example_id, r.input, r.gold) for r in store.predictions(a.key)]
    ex_b = [(r.example_id, r.input, r.gold) for r in store.predictions(b.key)]
    if ex_a == ex_b:
        return np.arange(len(ex_a))
    where = {e: i for i, e in enumerate(ex_b)}
    if len(ex_a) != len(ex_b) or len(where) != len(ex_b) or set(ex_a) != set(where):
        return None
    return np.array([where[e] for e in ex_a], dtype=np.int64)


def compare_runs(a: RunSummary, b: RunSummary, store: RunStore) -> RunComparison:
    """Every candidate of runs ``a`` and ``b`` (summaries of runs in ``store``), with the
    change of its primary metric on test and, where both runs answered the same test
    examples, a paired test of B against A, Holm-adjusted over the tests made.

    The test's resamples and seed are run B's ``evaluation.bootstrap_resamples`` and
    ``seed``. Raises nothing of its own; reading the store may raise
    :class:`~adaptlab.core.errors.AdaptlabError` for a damaged file.
    """
    cfg = ProjectConfig.model_validate(b.config)
    in_a = {c.name: c for c in a.candidates}
    in_b = {c.name: c for c in b.candidates}
    names = [*in_a, *(name for name in in_b if name not in in_a)]
    changes = []
    for name in names:
        ca, cb = in_a.get(name), in_b.get(name)
        if ca is None or cb is None:
            changes.append(CandidateChange(name, ca, cb))
            continue
        untested = None
        test = None
        if a.metric != b.metric:
            untested = f"the runs rank by different metrics ({a.metric}, {b.metric})"
        elif ca.key == cb.key:
            untested = "same stored result: identical answers"
        else:
            order = _pairing(store, ca, cb)
            if order is None:
                untested = "different test examples: no paired test"
            else:
                # diff = B - A; B's rows reordered to A's examples so row i is one example.
                test = compare(dataclasses.replace(cb, columns=cb.columns[order]), ca, cfg)
        changes.append(CandidateChange(name, ca, cb, test, untested=untested))
    tested = [i for i, c in enumerate(changes) if c.test is not None]
    adjusted = holm([changes[i].test.p_value for i in tested])  # type: ignore[union-attr]
    for i, p in zip(tested, adjusted, strict=True):
        changes[i] = dataclasses.replace(changes[i], p_holm=p)
    return RunComparison(a, b, changes)
