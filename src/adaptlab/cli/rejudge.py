"""A run's winner judged again under today's profile: what ``runs`` and ``best`` say.

Every command decides a stored run against the profile in ``adaptlab.yaml`` now
(:func:`adaptlab.engine.summarize_project`), while the run keeps the profile it was made
with. When ``adaptlab decide`` (or an edit) has changed the profile since, the winner
shown is a re-judgement: these helpers say so, name what changed, and give the winner
under the run's own profile beside today's when the two differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

    from adaptlab.config import ProfileConfig
    from adaptlab.engine.project import Project
    from adaptlab.engine.summary import ProjectSummary


@dataclass(frozen=True)
class Rejudged:
    """Run ``run_id`` decided under today's profile: ``now`` wins, where ``then`` won
    under the profile stored with the run; ``changes`` are the profile's fields that
    differ ("monthly_requests 50,000 → 500,000")."""

    run_id: str
    now: str
    then: str
    changes: tuple[str, ...]

    @property
    def flipped(self) -> bool:
        """Whether the winner changed with the profile."""
        return self.now != self.then

    def text(self) -> str:
        """The re-judgement in one sentence, after the run's id or the winner's name."""
        changed = "; ".join(self.changes)
        if self.flipped:
            return (
                f"judged under today's profile ({changed}): {self.now} wins; under the "
                f"profile stored with the run, {self.then} won"
            )
        return (
            f"judged under today's profile ({changed}): {self.now} wins, as it did under "
            "the profile stored with the run"
        )


def run_profile(run: sqlite3.Row) -> ProfileConfig | None:
    """The profile stored with ``run`` (a row of the ``runs`` table); None when its
    configuration no longer validates (a run that would not summarise either)."""
    from adaptlab.config import ProjectConfig

    try:
        return ProjectConfig.model_validate(json.loads(run["config_json"])).profile
    except (ValueError, TypeError):
        return None


def _value(x: Any) -> str:
    from adaptlab.core.format import number

    if x is None:
        return "none"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return number(x)
    return str(x)


def profile_changes(old: ProfileConfig, new: ProfileConfig) -> tuple[str, ...]:
    """The fields of ``new`` that differ from ``old``, each "name old → new"."""
    before, after = old.model_dump(), new.model_dump()
    return tuple(
        f"{key} {_value(before.get(key))} → {_value(value)}"
        for key, value in after.items()
        if before.get(key) != value
    )


def rejudged(summary: ProjectSummary, stored: ProfileConfig | None) -> Rejudged | None:
    """How ``summary`` (decided under today's profile) stands against ``stored``, the
    profile its run was made with; None when they are the same (or ``stored`` is None).

    The winner under ``stored`` is a second :func:`~adaptlab.decide.verdict.verdict` on
    the same measurements with today's cost settings; the learning curves are left out
    of it, since the winner never depends on them.
    """
    import dataclasses

    from adaptlab.decide.verdict import verdict

    if stored is None:
        return None
    changes = profile_changes(stored, summary.verdict.profile)
    if not changes:
        return None
    bare = dataclasses.replace(summary, curve_points=[], curve_flat={})
    then = verdict(bare, stored, summary.cfg.cost).winner
    return Rejudged(summary.run_id, summary.verdict.winner, then, changes)


def best_note(project: Project, run_id: str | None = None) -> str | None:
    """What ``best`` names when the profile changed since run ``run_id`` (default: the
    latest finished run): a sentence for the terminal, or None when the run's profile is
    today's (then ``best`` is the run's own winner and there is nothing to say).

    The run is summarised only when the profiles differ: reading its stored profile is
    one row of the store.
    """
    from adaptlab.engine import summarize_project
    from adaptlab.store import RunStore
    from adaptlab.store.runs import find_run

    with RunStore(project.store) as store:
        run = find_run(store, run_id)
    stored = run_profile(run)
    if stored is None or not profile_changes(stored, project.config.profile):
        return None
    summary = summarize_project(project, run["id"], learning=False)
    found = rejudged(summary, stored)
    if found is None:
        return None
    return f"best is {found.now}: run {found.run_id} {found.text()}"
