"""The encoder fine-tune's speed choices: sequence length from the data, early stopping,
and progress that says the epoch and the validation accuracy (one tiny shared run)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from adaptlab.core.progress import Advance, ProgressSink
from adaptlab.train.encoder import choose_max_length, token_lengths, train_encoder
from adaptlab.train.options import EncoderTrainOptions

TRAIN = {
    0: ["I was charged twice this month", "the invoice amount is wrong", "refund my card fee"],
    1: ["where is my parcel", "the delivery is late again", "tracking shows no movement"],
    2: ["I cannot log in", "reset my password please", "my two-factor code fails"],
}
VAL = {
    0: ["why is there an extra charge on my bill"],
    1: ["my package has not arrived yet"],
    2: ["the login page rejects my password"],
}
CAP = 48  # the encoder's max_seq_length in the shared run
LONG = "my parcel was sent to the wrong address and nobody answers " * 12  # > CAP tokens


@dataclass
class Recorder(ProgressSink):
    """Every task (description, total, units advanced) and every status line."""

    tasks: list[list[Any]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        entry: list[Any] = [description, total, 0]
        self.tasks.append(entry)

        def advance(n: int) -> None:
            entry[2] += n

        yield advance

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def note(self, message: str) -> None:
        self.statuses.append(f"note: {message}")


@dataclass
class Run:
    result: Any
    progress: Recorder
    options: EncoderTrainOptions
    lengths: list[int]


@pytest.fixture(scope="module")
def run(backend: Any, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A head fine-tune of 10 texts (one longer than the cap), up to 6 epochs, patience 1."""
    import numpy as np

    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )

    small = SentenceTransformerBackend(
        SentenceTransformerOptions(max_seq_length=CAP), model=backend.model
    )
    x_train = [t for texts in TRAIN.values() for t in texts] + [LONG]
    y_train = [y for y, texts in TRAIN.items() for _ in texts] + [1]
    x_val = [t for texts in VAL.values() for t in texts]
    y_val = [y for y, texts in VAL.items() for _ in texts]
    options = EncoderTrainOptions(epochs=6, patience=1, batch_size=4, learning_rate=1e-4)
    progress = Recorder()
    result = train_encoder(
        small,
        options,
        x_train,
        y_train,
        x_val,
        y_val,
        n_labels=3,
        seed=0,
        workdir=tmp_path_factory.mktemp("enc"),
        frozen_embed=lambda texts: np.asarray(small.embed(texts)),
        progress=progress,
    )
    return Run(result, progress, options, token_lengths(backend.model, x_train))


@pytest.mark.parametrize(
    ("lengths", "cap", "expected"),
    [
        ([9, 12, 15, 11], 128, 15),  # short inputs: their own longest, not 128
        ([12] * 199 + [300], 256, 12),  # one outlier in 200 is cut, not paid for
        ([200, 220, 240, 260], 128, 128),  # long inputs: the cap
        ([], 128, 128),  # nothing to measure: the cap
        ([1, 1], 8, 2),  # never below CLS + SEP
    ],
)
def test_sequence_length_comes_from_the_data(lengths: list[int], cap: int, expected: int) -> None:
    assert choose_max_length(lengths, cap) == expected


def test_a_cap_below_two_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="max_seq_length 1"):
        choose_max_length([5, 6], 1)


def test_token_lengths_are_the_tokenizers_before_truncation(backend: Any) -> None:
    lengths = token_lengths(backend.model, ["hello", LONG])
    assert lengths[0] == 3  # [CLS] hello [SEP]
    assert lengths[1] > backend.options.max_seq_length  # not cut at the model's limit


def test_training_uses_the_data_length_and_counts_what_it_cuts(run: Run) -> None:
    info = run.result.info
    assert info["longest_input"] == max(run.lengths) > CAP
    assert info["max_seq_length"] == CAP  # 11 inputs: the 99th percentile is the longest
    assert info["truncated_inputs"] == sum(n > CAP for n in run.lengths) == 1
    assert info["precision"] in {"bf16", "fp32"}


def test_early_stopping_stops_when_validation_stops_improving(run: Run) -> None:
    info = run.result.info
    val = [p.value for p in run.result.curves if p.split == "val" and p.metric == "accuracy"]
    assert info["stopped_early"] is True
    assert info["epochs_run"] == len(val) < run.options.epochs
    # It stopped `patience` epochs after the best, and no later epoch beat the best.
    assert info["epochs_run"] == info["best_epoch"] + run.options.patience
    assert max(val[info["best_epoch"] :]) <= info["best_val_accuracy"] == max(val)


def test_progress_says_epoch_and_validation_accuracy(run: Run) -> None:
    (description, total, done), *_ = run.progress.tasks
    steps, epochs = run.result.info["steps_per_epoch"], run.options.epochs
    val_units = 1  # 3 val texts: one forward pass, a third of a training step, rounded up
    assert description == "fine-tuning (head)"
    assert total == (steps + val_units) * epochs  # validation is part of the work
    assert done == (steps + val_units) * run.result.info["epochs_run"]
    assert run.progress.statuses[0] == f"epoch 1/{epochs}"
    ends = [s for s in run.progress.statuses if "val acc" in s and "best val" not in s]
    assert len(ends) == run.result.info["epochs_run"]
    assert re.fullmatch(rf"epoch 1/{epochs}, val acc [01]\.\d{{3}}", ends[0]), ends


def test_a_log_gets_a_line_with_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from adaptlab.cli.progress import RichProgress

    monkeypatch.delenv("ADAPTLAB_PROGRESS_EVERY_S", raising=False)  # 30 s: only status lines
    out = io.StringIO()
    with RichProgress(Console(file=out, width=80)) as progress:
        progress.set_candidate("ft")
        with progress.task("fine-tuning (head)", 10) as advance:
            progress.status("epoch 1/2")  # nothing done yet: no line
            advance(5)
            progress.status("epoch 1/2, val acc 0.912")
            advance(5)
        progress.status("outside any task")  # ignored
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(
        r"ft: fine-tuning \(head\), epoch 1/2, val acc 0\.912: 5/10 \(50%\), .+ left", lines[0]
    )
    assert lines[1].startswith("ft: fine-tuning (head), epoch 1/2, val acc 0.912: 10/10 in ")
