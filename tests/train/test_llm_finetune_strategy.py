"""The llm-finetune candidate end to end on a tiny Llama: train, answer, report, reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.engine import summarize_project
from adaptlab.engine.project import Project
from adaptlab.engine.runner import run_project
from tests.conftest import small_project

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

PARAMS = {
    "epochs": 3,
    "batch_size": 4,
    "learning_rate": 2e-2,
    "eval_steps": 2,
    "early_stopping_patience": None,
    "precision": "fp32",
    "lora_r": 4,
}


def _project(tmp_path: Path, example_project: Path, tiny_base: Path, **params: Any) -> Project:
    root = small_project(
        tmp_path / "p",
        example_project,
        per_label=5,
        candidates=[
            {"name": "tuned", "strategy": "llm-finetune", "llm": "tiny", "params": PARAMS | params}
        ],
    )
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["llms"] = {"tiny": {"backend": "hf", "name": str(tiny_base), "batch_size": 8}}
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Project.load(root)


def test_a_finetuned_candidate_trains_answers_and_reports_overfitting(
    tmp_path: Path, example_project: Path, tiny_base: Path
) -> None:
    project = _project(tmp_path, example_project, tiny_base)
    outcome = run_project(project)
    summary = summarize_project(project, outcome.run_id)
    c = summary.candidate("tuned")
    split = project.split()
    assert c.n == len(split.test) and c.trains_weights
    training = c.info["training"]
    # Three epochs of ceil(train/4) steps, evaluated every 2 steps.
    steps = 3 * -(-len(split.train) // 4)
    assert training["last_step"] == training["max_steps"] == steps
    assert 1 <= training["best_step"] <= steps
    assert training["examples"] == {"train": len(split.train), "val": len(split.val)}
    val_points = [p for p in c.curves if p[2] == "val" and p[3] == "loss"]
    assert len(val_points) == steps // 2 + (steps % 2)
    assert min(v for *_, v in val_points) == pytest.approx(training["best_val_loss"])
    assert c.overfit is not None and c.overfit.best_step == training["best_step"]
    if training["best_step"] != training["last_step"]:
        assert c.overfit.test is not None and c.overfit.last_accuracy is not None
    # The training chats are the short prompt the candidate answers with.
    key = c.key
    adapter = project.checkpoint_dir(key) / "train" / "best"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "README.md").is_file()
    card = (adapter / "README.md").read_text()
    assert str(tiny_base.name) in card or "tiny" in card

    # Unchanged: reused, not retrained.
    again = run_project(project)
    assert again.reused == ["tuned"] and again.computed == []


def test_a_remote_llm_or_no_validation_split_is_a_clear_error(
    tmp_path: Path, example_project: Path, tiny_base: Path
) -> None:
    from adaptlab.core.errors import ConfigError

    project = _project(tmp_path, example_project, tiny_base)
    cfg = yaml.safe_load((project.root / "adaptlab.yaml").read_text())
    cfg["data"]["val_size"] = 0
    (project.root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match="validation split"):
        run_project(Project.load(project.root))
    cfg["data"]["val_size"] = 0.1
    cfg["llms"]["tiny"] = {"backend": "openai", "name": "gpt-4o-mini", "base_url": "http://x/v1"}
    (project.root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match="trains a local model"):
        run_project(Project.load(project.root))


def test_a_hybrid_trains_on_the_prompt_it_answers_with(
    tmp_path: Path, example_project: Path, tiny_base: Path
) -> None:
    """Shots and a system-prompt variant are in the training chats exactly as sent."""
    from adaptlab.core.progress import ProgressSink
    from adaptlab.engine.runner import Models, make_context

    project = _project(tmp_path, example_project, tiny_base, shots=2, system="Sort tickets.")
    split = project.split()
    cand = project.config.candidates[0]
    strategy, _ = make_context(
        project, cand, tmp_path / "w", Models(project), ProgressSink(), with_llm=False
    )
    strategy.select_shots(split.train)  # type: ignore[attr-defined]
    chats = strategy.chat_records(split.train[:3])  # type: ignore[attr-defined]
    sent = strategy.requests([ex.text for ex in split.train[:3]])  # type: ignore[attr-defined]
    for chat, request, ex in zip(chats, sent, split.train[:3], strict=True):
        assert chat[:-1] == [{"role": m.role, "content": m.content} for m in request.messages]
        assert chat[0] == {"role": "system", "content": "Sort tickets."}
        assert chat[-1] == {"role": "assistant", "content": ex.label}
        assert chat[1]["content"].count("<example>") == 2
