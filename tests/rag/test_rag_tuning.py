"""``tune:`` on the kNN rag candidate (bundled MiniLM): top_k and weighting chosen on
validation (each validation input voting among train only), test never read in fit,
the tuned setting kept through export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adaptlab.engine import summarize_project
from adaptlab.engine.project import Project
from adaptlab.engine.runner import run_project
from tests.conftest import small_project


@pytest.mark.slow
def test_rag_tuning_chooses_on_val_only(
    tmp_path: Path, example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adaptlab.backends.base import EncoderBackend
    from adaptlab.strategies.rag.strategy import Rag

    root = small_project(
        tmp_path / "p",
        example_project,
        per_label=8,
        candidates=[
            {"name": "knn", "strategy": "rag", "params": {"top_k": 10}},
            {
                "name": "knn-tuned",
                "strategy": "rag",
                "params": {"top_k": 10, "tune": {"max_minutes": 1}},
            },
        ],
    )
    project = Project.load(root)
    split = project.split()
    phase = ["none"]
    embedded: list[tuple[str, str]] = []
    real_embed_batch, real_fit = EncoderBackend.embed, Rag.fit

    def embed(self: Any, texts: Any, *a: Any, **kw: Any) -> Any:
        embedded.extend((phase[0], t) for t in texts)
        return real_embed_batch(self, texts, *a, **kw)

    def fit(self: Any, train: Any, val: Any) -> None:
        phase[0] = "fit"
        real_fit(self, train, val)
        phase[0] = "after"

    monkeypatch.setattr(EncoderBackend, "embed", embed)
    monkeypatch.setattr(Rag, "fit", fit)
    outcome = run_project(project)
    test_texts = {ex.text for ex in split.test}
    assert not {t for p, t in embedded if p == "fit"} & test_texts
    assert {ex.text for ex in split.val} <= {t for p, t in embedded if p == "fit"}

    summary = summarize_project(project, outcome.run_id)
    plain, tuned = summary.candidate("knn"), summary.candidate("knn-tuned")
    tuning = tuned.info["tuning"]
    assert tuning["method"] == "grid" and tuning["space"] == {"top_k": [1, 3, 5, 10, 20, 50]}
    assert [t["params"]["top_k"] for t in tuning["trials"]] == [10, 1, 3, 5, 20, 50]
    assert all(t["n_val"] == len(split.val) and t["rung"] == 0 for t in tuning["trials"])
    # The default trial is the untuned candidate's validation answers, example by example.
    assert plain.val_columns is not None and tuned.val_columns is not None
    assert tuning["default"]["params"] == {"top_k": 10, "weighting": "similarity"}
    assert tuning["default"]["val_per_example"] == list(plain.val_columns[:, 0])
    assert tuning["tuned"]["val_per_example"] == list(tuned.val_columns[:, 0])
    best = max(t["val_score"] for t in tuning["trials"])
    assert tuning["tuned"]["val_score"] == best >= tuning["default"]["val_score"]
    assert tuning["budget"]["stopped_by"] is None and not tuning["left_out"]
