"""Evaluation without repeated work: candidates answering with the same frozen encoder
share each list's vectors, the encoder's timing passes and latencies are measured once
per run and charged to each candidate, timing passes run on a sample, and a run stores
the split of its time by stage.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from adaptlab import Project, run_project
from adaptlab.backends.base import EncoderBackend
from adaptlab.engine.embeddings import MeteredEncoder, SharedEmbeddings
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


class Slow(Counting):
    """20 ms a batch."""

    def embed_batch(self, texts: object) -> np.ndarray:
        time.sleep(0.02)
        return super().embed_batch(texts)


def test_a_timing_pass_charges_what_the_encoder_cost_when_it_was_measured() -> None:
    encoder, ledger = Slow(), dict[object, object]()
    first = MeteredEncoder(encoder, ledger, "timing 0")
    a = first.embed(["one", "two"])
    assert encoder.texts == 2 and first.take() == (0.0, 0.0)  # computed: the caller times it
    a[0, 0] = 99.0  # a caller normalising in place changes nothing recorded
    second = MeteredEncoder(encoder, ledger, "timing 0")
    b = second.embed(["one", "two"])
    assert encoder.texts == 2 and second.replayed == 1
    np.testing.assert_array_equal(b, encoder.embed(["one", "two"]))
    wall, cpu = second.take()
    assert wall >= 0.02 and cpu >= 0.0 and second.charged_wall_s == wall
    assert second.take() == (0.0, 0.0)  # taken once
    # Another pass is measured afresh: the spread between passes stays the encoder's.
    MeteredEncoder(encoder, ledger, "timing 1").embed(["one", "two"])
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
    # zero-shot ran first and measured the encoder; few-shot was charged its seconds.
    first, second = infos
    assert "encoder_seconds_charged" not in first
    assert second["encoder_seconds_charged"] > 0
