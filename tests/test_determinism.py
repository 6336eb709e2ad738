"""Same config and seed, same numbers: two independent runs store identical predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adaptlab.engine.project import Project
from adaptlab.engine.runner import run_project
from adaptlab.store import RunStore
from tests.conftest import small_project

CANDIDATES: list[dict[str, Any]] = [
    {"name": "zero-shot", "strategy": "zero-shot"},
    {"name": "few-shot", "strategy": "few-shot", "params": {"k": 4}},
    {"name": "rag", "strategy": "rag", "params": {"top_k": 5}},
    {"name": "finetune", "strategy": "finetune", "params": {"epochs": 1}},
]


def _run(folder: Path) -> dict[str, list[tuple[str | None, float | None]]]:
    project = Project.load(folder)
    outcome = run_project(project)
    with RunStore(project.store_path) as store:
        return {
            link["name"]: [(p.predicted, p.score) for p in store.predictions(link["result_key"])]
            + [(str(c), None) for c in store.curves(link["result_key"])]
            for link in store.run_candidates(outcome.run_id)
        }


def test_two_runs_same_numbers(tmp_path: Path, example_project: Path) -> None:
    a = _run(small_project(tmp_path / "a", example_project, 15, CANDIDATES))
    b = _run(small_project(tmp_path / "b", example_project, 15, CANDIDATES))
    assert set(a) == {c["name"] for c in CANDIDATES}
    for name in a:
        labels_a = [p for p, _ in a[name]]
        labels_b = [p for p, _ in b[name]]
        assert labels_a == labels_b, name
        scores_a = [s for _, s in a[name] if s is not None]
        scores_b = [s for _, s in b[name] if s is not None]
        assert scores_a == scores_b, name
