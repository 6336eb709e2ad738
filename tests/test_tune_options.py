"""Bad ``tune:`` options are refused with the key and the fix, for every tuned route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from adaptlab.core.errors import ConfigError
from adaptlab.engine.project import Project
from adaptlab.strategies.finetune.config import FinetuneOptions
from adaptlab.strategies.llm_finetune.config import LLMFinetuneOptions
from adaptlab.strategies.rag.config import RagOptions
from adaptlab.strategies.tuning import grid, tuning_plan

LORA: Any = LLMFinetuneOptions
ENCODER: Any = FinetuneOptions
RAG: Any = RagOptions


@pytest.mark.parametrize(
    ("options", "tune", "where", "says"),
    [
        (LORA, {"max_minutes": 5, "lerning_rate": [1e-4]}, "tune.lerning_rate", "Extra inputs"),
        (LORA, {"learning_rate": [1e-4]}, "tune.max_minutes", "Field required"),
        (LORA, {"max_minutes": 0}, "tune.max_minutes", "greater than 0"),
        (LORA, {"max_minutes": -3}, "tune.max_minutes", "greater than 0"),
        (LORA, {"max_minutes": 5, "eta": 1}, "tune.eta", "greater than or equal to 2"),
        (LORA, {"max_minutes": 5, "learning_rate": []}, "tune.learning_rate", "empty list"),
        (LORA, {"max_minutes": 5, "learning_rate": [0.0]}, "tune.learning_rate.0", "greater"),
        (LORA, {"max_minutes": 5, "learning_rate": [-1e-4]}, "tune.learning_rate.0", "greater"),
        (LORA, {"max_minutes": 5, "learning_rate": [True]}, "tune.learning_rate.0", "a number"),
        (LORA, {"max_minutes": 5, "learning_rate": "1e-4"}, "tune.learning_rate", "list"),
        (LORA, {"max_minutes": 5, "learning_rate": [1e-4, 1e-4]}, "tune.learning_rate", "repeats"),
        (LORA, {"max_minutes": 5, "epochs": [0]}, "tune.epochs.0", "greater"),
        (LORA, {"max_minutes": 5, "lora_r": []}, "tune.lora_r", "empty list"),
        (LORA, {"max_minutes": 5, "lora_r": [0]}, "tune.lora_r.0", "greater"),
        (LORA, {"max_minutes": 5, "lora_r": [8.5]}, "tune.lora_r.0", "valid integer"),
        (LORA, {"max_minutes": 5, "lora_r": [8.0]}, "tune.lora_r.0", "valid integer"),
        (LORA, {"max_minutes": 5, "lora_r": ["8"]}, "tune.lora_r.0", "valid integer"),
        (LORA, {"max_minutes": 5, "lora_r": [True]}, "tune.lora_r.0", "valid integer"),
        (LORA, "fast", "tune", "valid dictionary"),
        (ENCODER, {"max_minutes": 5, "learning_rate": []}, "tune.learning_rate", "empty list"),
        (ENCODER, {"max_minutes": 5, "learning_rate": [0]}, "tune.learning_rate.0", "greater"),
        (ENCODER, {"max_minutes": 5, "lora_r": [8]}, "tune.lora_r", "Extra inputs"),
        (RAG, {"max_minutes": 5, "top_k": []}, "tune.top_k", "empty list"),
        (RAG, {"max_minutes": 5, "top_k": [0]}, "tune.top_k.0", "greater"),
        (RAG, {"max_minutes": 5, "top_k": [2.5]}, "tune.top_k.0", "valid integer"),
        (RAG, {"max_minutes": 5, "weighting": ["cosine"]}, "tune.weighting.0", "similarity"),
        (RAG, {"max_minutes": 5, "context_k": [2]}, "tune.context_k", "Extra inputs"),
    ],
)
def test_bad_tune_options_are_refused(options: Any, tune: Any, where: str, says: str) -> None:
    with pytest.raises(ValidationError) as err:
        options.model_validate({"tune": tune})
    errors = err.value.errors()
    assert [".".join(map(str, e["loc"])) for e in errors] == [where]
    assert says in errors[0]["msg"]


def test_a_rank_search_on_a_full_finetune_is_refused() -> None:
    with pytest.raises(ValidationError, match="method is 'full'"):
        LORA.model_validate({"method": "full", "tune": {"max_minutes": 5, "lora_r": [8]}})


def test_the_config_error_names_the_file_line_and_key(
    tmp_path: Path, example_project: Path
) -> None:
    import shutil

    root = tmp_path / "p"
    shutil.copytree(example_project, root)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["candidates"] = [
        {"name": "knn", "strategy": "rag", "params": {"tune": {"max_minutes": 5, "top_k": []}}}
    ]
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        Project.load(root)
    text = str(err.value)
    assert "adaptlab.yaml:" in text and "top_k" in text and "empty list" in text


def test_the_search_space_and_the_dry_run_line() -> None:
    lora = LORA.model_validate({"learning_rate": 1e-3, "lora_r": 16, "tune": {"max_minutes": 20}})
    default, space = lora.tuning_space()
    assert default == {"learning_rate": 1e-3, "epochs": 3.0, "lora_r": 16}
    assert space == {"learning_rate": [pytest.approx(1e-3 / 3), 3e-3], "lora_r": [8, 32]}
    assert len(grid(space, default)) == 5  # the default + 2 x 2
    assert tuning_plan(lora) == (
        "tuning: successive halving (eta 3) over 5 settings, at most 7 trials (the default "
        "+ 4 + 2 per rung), capped at 20 minutes"
    )
    assert tuning_plan(LORA.model_validate({})) is None
    rag = RAG.model_validate({"tune": {"max_minutes": 1, "weighting": ["uniform"]}})
    assert rag.tuning_space()[1] == {"weighting": ["uniform"]}
    assert tuning_plan(rag) == (
        "tuning: grid of 2 settings (the default included), each scored on the validation "
        "split, at most 2 trials, capped at 1 minute"
    )
    enc = ENCODER.model_validate({"tune": {"max_minutes": 3, "learning_rate": [1e-5, 1e-4]}})
    assert enc.tuning_space() == (
        {"learning_rate": 5e-5, "epochs": 8},
        {"learning_rate": [1e-5, 1e-4]},
    )
    assert "grid of 3 settings" in str(tuning_plan(enc))
