"""A result key holds exactly what changes a candidate's answers (Strategy.reads)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.engine.project import Project
from adaptlab.engine.runner import result_key
from tests.hostile.conftest import base_config, write_project

CANDIDATES = [
    {"name": "zs", "strategy": "zero-shot"},
    {"name": "fs", "strategy": "few-shot", "params": {"k": 2}},
    {"name": "rag", "strategy": "rag"},
    {"name": "ft", "strategy": "finetune", "params": {"epochs": 1}},
    {"name": "llm-zs", "strategy": "llm-zero-shot", "llm": "chat"},
    {"name": "llm-mmr", "strategy": "llm-few-shot", "llm": "chat",
     "params": {"shots": 2, "selector": "mmr"}},
    {"name": "tpl", "strategy": "prompt", "llm": "chat", "params": {"template": "mine.j2"}},
]  # fmt: skip
ANSWER_SETTINGS_OF_PROMPTS = {"zs", "llm-zs", "llm-mmr", "tpl"}
MINE = '{% extends "classify.j2" %}{% block system %}Sort.{% endblock %}'


def _config() -> dict[str, Any]:
    cfg = base_config(candidates=CANDIDATES)
    cfg["llms"] = {"chat": {"backend": "openai", "name": "m", "base_url": "http://127.0.0.1:9/v1"}}
    return cfg


def _keys(root: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, str]:
    cfg = _config()
    if edit is not None:
        edit(cfg)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    project = Project.load(root)
    split = project.split()
    return {c.name: result_key(project, c, split) for c in project.config.candidates}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "p", config=_config())
    (root / "mine.j2").write_text(MINE)
    return root


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_keys_are_stable_and_distinct(project: Path) -> None:
    first = _keys(project)
    assert first == _keys(project)
    assert len(set(first.values())) == len(first)


def test_a_label_description_changes_only_the_candidates_that_read_it(project: Path) -> None:
    before = _keys(project)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["labels"]["billing"] = "charges, invoices and refunds of fees"

    assert _changed(before, _keys(project, edit)) == ANSWER_SETTINGS_OF_PROMPTS


def test_label_names_and_their_order_change_every_key(project: Path) -> None:
    before = _keys(project)

    def reorder(cfg: dict[str, Any]) -> None:
        cfg["labels"] = dict(reversed(list(cfg["labels"].items())))

    assert _changed(before, _keys(project, reorder)) == set(before)


@pytest.mark.parametrize(
    "setting", [("latency_samples", 7), ("consistency_inputs", 3), ("bootstrap_resamples", 300)]
)
def test_measurement_settings_change_no_answer_key(project: Path, setting: Any) -> None:
    before = _keys(project)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["evaluation"] = {setting[0]: setting[1]}

    assert _changed(before, _keys(project, edit)) == set()


def test_consistency_samples_rekey_only_generative_candidates(project: Path) -> None:
    before = _keys(project)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["evaluation"] = {"consistency_samples": 3, "consistency_inputs": 5}

    after = _keys(project, edit)
    assert _changed(before, after) == {"llm-zs", "llm-mmr", "tpl"}

    def more_inputs(cfg: dict[str, Any]) -> None:
        cfg["evaluation"] = {"consistency_samples": 3, "consistency_inputs": 6}

    assert _changed(after, _keys(project, more_inputs)) == {"llm-zs", "llm-mmr", "tpl"}


def test_the_encoder_keys_only_candidates_that_embed(project: Path) -> None:
    before = _keys(project)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["model"] = {"max_seq_length": 64}

    # llm-mmr picks its examples by embedding similarity; llm-zs and tpl embed nothing.
    assert _changed(before, _keys(project, edit)) == {"zs", "fs", "rag", "ft", "llm-mmr"}


def test_an_edited_template_changes_its_candidate_only(project: Path) -> None:
    before = _keys(project)
    (project / "mine.j2").write_text(MINE.replace("Sort.", "Sort!"))
    assert _changed(before, _keys(project)) == {"tpl"}


def test_options_and_seed(project: Path) -> None:
    before = _keys(project)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["candidates"][3]["params"]["epochs"] = 2

    assert _changed(before, _keys(project, edit)) == {"ft"}

    def seed(cfg: dict[str, Any]) -> None:
        cfg["seed"] = 1

    assert _changed(before, _keys(project, seed)) == set(before)
