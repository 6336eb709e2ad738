"""adaptlab: prompt, RAG or fine-tune? Measure all of them on your task and decide.

The Python API mirrors the CLI::

    import adaptlab
    adaptlab.init_project("my-task", example="support-tickets")
    project = adaptlab.Project.load("my-task")
    outcome = adaptlab.run_project(project)
    summary = adaptlab.summarize_project(project)
    adaptlab.write_report(summary, "report.html")

Nothing here imports torch until a model is actually loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AdaptlabError",
    "Project",
    "__version__",
    "init_project",
    "load_config",
    "run_project",
    "summarize_project",
    "write_report",
]

if TYPE_CHECKING:
    from adaptlab.evaluation.summary import RunSummary
    from adaptlab.project import Project

from adaptlab.config import load_config
from adaptlab.core.errors import AdaptlabError


def __getattr__(name: str) -> Any:
    # Lazy so that `import adaptlab` stays cheap for the CLI's --help.
    if name == "Project":
        from adaptlab.project import Project

        return Project
    if name == "init_project":
        from adaptlab.scaffold import init_project

        return init_project
    if name == "run_project":
        from adaptlab.runner import run_project

        return run_project
    if name == "write_report":
        from adaptlab.report import write_report

        return write_report
    raise AttributeError(f"module 'adaptlab' has no attribute {name!r}")


def summarize_project(
    project: Project, run_id: str | None = None, *, learning: bool = True
) -> RunSummary:
    """The summary of a project's latest (or a given) run, recomputed from the store.

    A generation task scored by an LLM judge grades through the project's response
    cache, so summarising again sends no request twice.
    """
    from adaptlab.evaluation.summary import summarize
    from adaptlab.store import RunStore

    with RunStore(project.store_path) as store:
        return summarize(
            store,
            run_id,
            llm_cache=project.llm_cache_path,
            profile=project.config.profile,
            cost=project.config.cost,
            learning=learning,
        )
