"""The engine: a project, its plan, its run, its summary and its exported models.

``Project`` loads ``adaptlab.yaml`` with its data and split; ``plan_project`` is the
dry run; ``run_project`` fits and scores every candidate (results keyed by
``result_key``, models loaded once per run by ``Models``); ``summarize_project``
rebuilds a run's figures from the store; ``export_candidate`` and ``load_model``
turn a candidate into a self-contained model folder and back.
"""

from adaptlab.engine.artifact import (
    ExportOutcome,
    ServedModel,
    export_candidate,
    load_model,
    open_candidate,
)
from adaptlab.engine.manifest import Manifest
from adaptlab.engine.planning import plan_project, training_plan
from adaptlab.engine.project import Project
from adaptlab.engine.runner import Models, RunEvents, RunOutcome, result_key, run_project
from adaptlab.engine.scaffold import init_project
from adaptlab.engine.summary import summarize_project
from adaptlab.engine.validate import check_registered, load_config

__all__ = [
    "ExportOutcome",
    "Manifest",
    "Models",
    "Project",
    "RunEvents",
    "RunOutcome",
    "ServedModel",
    "check_registered",
    "export_candidate",
    "init_project",
    "load_config",
    "load_model",
    "open_candidate",
    "plan_project",
    "result_key",
    "run_project",
    "summarize_project",
    "training_plan",
]
