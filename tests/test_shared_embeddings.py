"""Evaluation without repeated work: candidates answering with the same frozen encoder
share each list's vectors, timing passes run on a sample, and a run stores the split of
its time by stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adaptlab import Project, run_project
from adaptlab.backends.base import EncoderBackend
from adaptlab.engine.embeddings import SharedEmbeddings
from adaptlab.store import RunStore
from tests.conftest import small_project


def _latest(store: RunStore) -> str:
    run = store.latest_run()
    assert run is not None
    return str(run["id"])


class Counting(EncoderBackend):
    """A deterministic encoder that counts the texts it embeds."""

    name = "counting"

    def __init__(self) -> None:
        self.model_id = "counting"
        self.texts = 0

    def embed_batch(self, texts: object) -> np.ndarray:
        rows = [[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts]  # type: ignore[attr-defined]
        self.texts += len(rows)
        x = np.asarray(rows, dtype=np.float32)
        out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def test_each_list_is_embedded_once_and_returned_as_a_copy() -> None:
    encoder, memo = Counting(), dict[str, np.ndarray]()
    shared = SharedEmbeddings(encoder, memo)
    a = shared.embed(["one", "two"])
    a[0, 0] = 99.0  # a caller normalising in place changes nothing stored
    b = shared.embed(["one", "two"])
    assert encoder.texts == 2 and shared.hits == 1
    assert b[0, 0] != 99.0
    np.testing.assert_array_equal(b, encoder.embed(["one", "two"]))
    shared.embed(["two", "one"])  # another list (order matters): computed, not reused
    assert encoder.texts == 6


@pytest.fixture(scope="module")
def two_classifiers(tmp_path_factory: pytest.TempPathFactory, example_project: Path) -> Path:
    root = small_project(
        tmp_path_factory.mktemp("shared") / "p",
        example_project,
        per_label=20,
        candidates=[
            {"name": "zero-shot", "strategy": "zero-shot"},
            {"name": "few-shot", "strategy": "few-shot", "params": {"k": 4}},
        ],
    )
    run_project(Project.load(root))
    return root


def test_shared_vectors_give_the_answers_a_candidate_gets_alone(
    two_classifiers: Path, tmp_path: Path, example_project: Path
) -> None:
    alone = small_project(
        tmp_path / "alone",
        example_project,
        per_label=20,
        candidates=[{"name": "few-shot", "strategy": "few-shot", "params": {"k": 4}}],
    )
    run_project(Project.load(alone))

    def answers(root: Path) -> list[tuple[str, str | None, float | None]]:
        with RunStore(root / ".adaptlab" / "runs.db") as store:
            link = next(r for r in store.run_candidates(_latest(store)) if r["name"] == "few-shot")
            rows = list(store.predictions(link["result_key"])) + list(
                store.predictions(link["result_key"], "val")
            )
        return [(r.example_id, r.predicted, r.score) for r in rows]

    assert answers(two_classifiers) == answers(alone)


def test_a_run_stores_the_split_of_its_time(two_classifiers: Path) -> None:
    with RunStore(two_classifiers / ".adaptlab" / "runs.db") as store:
        links = store.run_candidates(_latest(store))
        infos = [store.result(link["result_key"]).info for link in links]
    for info in infos:
        seconds = info["seconds"]
        assert set(seconds) == {"fit", "answers", "timing", "latency", "val", "consistency"}
        assert all(v >= 0 for v in seconds.values())
        # The small test split is under the sample size: every input is timed.
        assert info["timing_sample"] > 0
