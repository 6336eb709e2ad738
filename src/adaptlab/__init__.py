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

import importlib
from typing import TYPE_CHECKING, Any

from adaptlab.core.version import __version__

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
    from adaptlab.engine import Project, init_project, load_config, run_project, summarize_project
    from adaptlab.report import write_report

from adaptlab.core.errors import AdaptlabError

_LAZY = {
    "Project": "adaptlab.engine",
    "init_project": "adaptlab.engine",
    "load_config": "adaptlab.engine",
    "run_project": "adaptlab.engine",
    "summarize_project": "adaptlab.engine",
    "write_report": "adaptlab.report",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import adaptlab` stays cheap for the CLI's --help.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adaptlab' has no attribute {name!r}")
