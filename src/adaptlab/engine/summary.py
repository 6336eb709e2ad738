"""A project's run summarised from its store, weighed against the project's profile now."""

from __future__ import annotations

from adaptlab.engine.project import Project
from adaptlab.evaluation.summary import RunSummary, summarize
from adaptlab.store import RunStore


def summarize_project(
    project: Project, run_id: str | None = None, *, learning: bool = True
) -> RunSummary:
    """The summary of a project's latest (or a given) run, recomputed from the store.

    A generation task scored by an LLM judge grades through the project's response
    cache, so summarising again sends no request twice.
    """
    with RunStore(project.store_path) as store:
        return summarize(
            store,
            run_id,
            llm_cache=project.llm_cache_path,
            profile=project.config.profile,
            cost=project.config.cost,
            learning=learning,
        )
