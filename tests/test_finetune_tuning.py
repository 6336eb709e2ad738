"""``tune:`` on the encoder fine-tune (bundled MiniLM): the record, test never read, and
a resumed search that trains nothing again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adaptlab.engine import summarize_project
from adaptlab.engine.project import Project
from adaptlab.engine.runner import run_project
from tests.conftest import small_project


@pytest.mark.slow
def test_encoder_learning_rate_tuning(
    tmp_path: Path, example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adaptlab.strategies.finetune import tune as tune_mod
    from adaptlab.strategies.finetune.strategy import Finetune

    params = {"method": "head", "epochs": 1, "batch_size": 8}
    root = small_project(
        tmp_path / "p",
        example_project,
        per_label=4,
        candidates=[
            {
                "name": "ft",
                "strategy": "finetune",
                "params": params | {"tune": {"max_minutes": 60, "learning_rate": [1e-3]}},
            }
        ],
    )
    project = Project.load(root)
    split = project.split()
    trained: list[float] = []
    predicted: list[tuple[bool, list[str]]] = []
    real_train = tune_mod.train_encoder  # type: ignore[attr-defined]
    real_predict, real_fit = Finetune.predict, Finetune.fit
    in_fit = [False]

    def train(backend: Any, options: Any, *a: Any, **kw: Any) -> Any:
        trained.append(options.learning_rate)
        return real_train(backend, options, *a, **kw)

    def predict(self: Any, texts: Any) -> Any:
        predicted.append((in_fit[0], list(texts)))
        return real_predict(self, texts)

    def fit(self: Any, train: Any, val: Any) -> None:
        in_fit[0] = True
        real_fit(self, train, val)
        in_fit[0] = False

    monkeypatch.setattr(tune_mod, "train_encoder", train)
    monkeypatch.setattr(Finetune, "predict", predict)
    monkeypatch.setattr(Finetune, "fit", fit)
    outcome = run_project(project)

    # The default (5e-5) and one more; one rung, each at full epochs; only val answered in fit.
    assert trained == [5e-5, 1e-3]
    val_texts = [ex.text for ex in split.val]
    assert [texts for fitting, texts in predicted if fitting] == [val_texts, val_texts]
    test_texts = [ex.text for ex in split.test]
    assert sum(texts == test_texts for fitting, texts in predicted if not fitting) >= 1
    c = summarize_project(project, outcome.run_id).candidate("ft")
    tuning = c.info["tuning"]
    assert tuning["default"]["params"] == {"learning_rate": 5e-5, "epochs": 1}
    assert tuning["space"] == {"learning_rate": [1e-3]}
    assert [t["params"]["learning_rate"] for t in tuning["trials"]] == [5e-5, 1e-3]
    best = max(tuning["trials"], key=lambda t: t["val_score"])
    assert tuning["tuned"]["val_score"] == best["val_score"]
    assert len(tuning["tuned"]["val_per_example"]) == len(split.val)
    # The tuned model answered val in the run as it did in its trial.
    assert c.val_columns is not None
    assert list(c.val_columns[:, 0]) == tuning["tuned"]["val_per_example"]
    assert c.info["best_epoch"] is not None and c.curves

    # The stored result lost (an interruption after the search): nothing trains again.
    project.store_path.unlink()
    trained.clear()
    again = run_project(project)
    assert again.computed == ["ft"] and trained == []
    tuning2 = summarize_project(project, again.run_id).candidate("ft").info["tuning"]
    assert tuning2["tuned"] == tuning["tuned"] and all(t["reused"] for t in tuning2["trials"])
