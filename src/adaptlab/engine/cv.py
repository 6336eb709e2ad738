"""k-fold cross-validation over train+val, for candidates cheap to refit.

Candidates are chosen on the validation split; with ~100 validation examples a 95%
interval spans about ±9 points, and most candidates are "within noise" of each other.
A candidate whose fit takes seconds (:attr:`Strategy.cv_refit`) can be fitted k times
instead: each train+val example is answered once by a model that never saw it, so
the choice among such candidates rests on every train+val example (~10x the
validation split). Kohavi (1995, IJCAI) found 10 folds a little less pessimistic than
5, both far better than one holdout; 5 is scikit-learn's default and half the work.

The encoder is frozen, so a text's vector does not depend on the fold: the train+val
texts are embedded once per run (:class:`VectorTable`) and every fold of every encoder
candidate looks its vectors up instead of embedding ~k+1 times as many texts again.
Out-of-fold answers are not timed; the test answers keep their measured latency.

Folds are stratified by label, seeded by the project's seed, and group-aware: inputs
equal after :func:`adaptlab.data.validate.normalise` share a fold, as they share a
split, so a duplicate never answers for itself. Every candidate of a run gets the same
folds, so two candidates' out-of-fold answers pair example by example.

The out-of-fold answers are a measurement of the stored result, not part of it: they
enter no result key, and a result stored before cross-validation existed gains them
without being fitted again.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.backends.base import EncoderBackend
from adaptlab.core.progress import ProgressSink
from adaptlab.data.validate import normalise

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.config.schema import EvaluationConfig
    from adaptlab.core.types import Prediction
    from adaptlab.data import Example, Split
    from adaptlab.store import ResultRow
    from adaptlab.strategies import Strategy


@dataclass(frozen=True)
class Folds:
    """k folds over train+val: ``examples`` are train then val, ``fold[j]`` is example
    j's fold (0 to k-1). ``stratified`` is False only where every label has fewer than
    k examples (then the folds are seeded and group-aware but not stratified)."""

    k: int
    seed: int
    examples: tuple[Example, ...]
    n_train: int
    fold: tuple[int, ...]
    stratified: bool

    def part(self, i: int) -> tuple[list[Example], list[Example], list[int]]:
        """Fold ``i``: (train examples of the other folds, their val examples, positions
        in :attr:`examples` of the held-out ones)."""
        train = [ex for j, ex in enumerate(self.examples[: self.n_train]) if self.fold[j] != i]
        val = [
            ex
            for j, ex in enumerate(self.examples[self.n_train :], start=self.n_train)
            if self.fold[j] != i
        ]
        held = [j for j, f in enumerate(self.fold) if f == i]
        return train, val, held

    def same_as(self, info: Any) -> bool:
        """Whether ``info`` (a result's ``info["cv"]``) was made with exactly these folds."""
        return (
            isinstance(info, dict)
            and info.get("folds") == self.k
            and info.get("seed") == self.seed
            and info.get("fold") == list(self.fold)
        )


def make_folds(split: Split, k: int, seed: int) -> Folds:
    """Stratified, seeded, group-aware folds over ``split.train + split.val``.

    scikit-learn's ``StratifiedGroupKFold(k, shuffle=True, random_state=seed)`` with
    the normalised input as group. A label with fewer than k examples is spread over
    as many folds as it has examples (a fold whose training part then lacks it answers
    that example wrong, as a model that never saw the label would); where every label
    has fewer than k, the folds are only shuffled groups. Raises ValueError when there
    are fewer than k distinct inputs (:func:`skip_reason` checks for 2k).
    """
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    examples = (*split.train, *split.val)
    keys = [normalise(ex.text) for ex in examples]
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    groups = np.array([index[key] for key in keys])
    labels = sorted({ex.label for ex in examples})
    y = np.array([labels.index(ex.label) for ex in examples])
    stratified = bool(np.bincount(y).max() >= k)
    if not stratified:
        y = np.zeros(len(examples), dtype=int)
    fold = np.empty(len(examples), dtype=int)
    with warnings.catch_warnings():
        # "The least populated class in y has only n members": expected, handled above
        warnings.simplefilter("ignore", UserWarning)
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, held) in enumerate(cv.split(np.zeros(len(examples)), y, groups)):
            fold[held] = i
    return Folds(k, seed, examples, len(split.train), tuple(int(f) for f in fold), stratified)


def applies(cls: type[Strategy], task: str, ev: EvaluationConfig) -> bool:
    """Whether a candidate of this strategy is cross-validated at all: a classification
    task, a strategy cheap to refit (:attr:`~Strategy.cv_refit`), ``ev.cv_folds`` >= 2."""
    return ev.cv_folds >= 2 and task == "classification" and cls.cv_refit


def skip_reason(ev: EvaluationConfig, fit_seconds: float, split: Split) -> str | None:
    """Why a candidate that :func:`applies` is not cross-validated this time (None: it is).

    Its measured fit (wall seconds on the train split) must be within
    ``ev.cv_max_fit_s``, and train+val must hold at least 2k distinct inputs, so each
    fold keeps most of the data to train on.
    """
    k = ev.cv_folds
    if fit_seconds > ev.cv_max_fit_s:
        return (
            f"its fit took {fit_seconds:.0f} s, over evaluation.cv_max_fit_s "
            f"({ev.cv_max_fit_s:g} s)"
        )
    distinct = len({normalise(ex.text) for ex in (*split.train, *split.val)})
    if distinct < 2 * k:
        return f"train+val has {distinct} distinct inputs, fewer than 2 x {k} folds"
    return None


def estimate_seconds(
    result: ResultRow, n_train: int, folds: Folds, *, embeds: bool, table_ready: bool
) -> float:
    """Wall seconds k folds should take, from the result's measured fit and predict.

    Without an encoder, a fold fits on (k-1)/k of train+val (the fit taken as linear
    in its examples) and the folds together answer every train+val example once (at
    the measured test seconds per answer). With one (``embeds``), the vectors are
    looked up: embedding train+val once, unless ``table_ready``, and about one fit for
    what is embedded anew (label prompts) or trained on the vectors.
    """
    n = len(folds.examples)
    per_answer = result.predict_seconds / max(result.n_predictions, 1)
    if embeds:
        return (0.0 if table_ready else n * per_answer) + result.fit_seconds
    per_fit = result.fit_seconds * (n * (folds.k - 1) / folds.k) / max(n_train, 1)
    return folds.k * per_fit + n * per_answer


class VectorTable(EncoderBackend):
    """The run's encoder, with the vectors of known texts looked up, not computed.

    ``vectors`` maps a text to its row from the :meth:`EncoderBackend.embed` calls over
    the train and the validation list (each in split order, :meth:`of`), so a text's
    vector is the same in every fold and for every candidate, whatever asked first.
    Other texts (label prompts) go to the encoder as the list they come in, memoised per
    list as :meth:`StrategyContext.embed` does: the same prompts asked in every fold are
    embedded once.
    """

    name = "vector-table"

    def __init__(self, encoder: EncoderBackend, vectors: dict[str, np.ndarray]) -> None:
        self.encoder = encoder
        self.vectors = vectors
        self._lists: dict[tuple[str, ...], np.ndarray] = {}
        self.model_id = encoder.model_id
        self.batch_size = encoder.batch_size

    @classmethod
    def of(
        cls, encoder: EncoderBackend, lists: Sequence[Sequence[str]], progress: ProgressSink
    ) -> Any:
        """Embed each of ``lists`` once (one progress bar) and look them up from then on.

        ``lists`` are the train and the validation texts, each in split order: passed
        through the run's memo of embeddings (a
        :class:`~adaptlab.engine.embeddings.SharedEmbeddings`), the validation list is
        the one the candidates already answered and the train list the one a kNN index
        embeds, so neither is computed twice in a run.
        """
        total = sum(len(texts) for texts in lists)
        vectors: dict[str, np.ndarray] = {}
        with progress.task("embedding train+val for cross-validation", total) as advance:
            for texts in lists:
                if texts:
                    rows = encoder.embed(list(texts), on_batch=advance)
                    vectors.update(zip(texts, rows, strict=True))
        return cls(encoder, vectors)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Vectors of ``texts`` in order (n x dim, L2-normalised float32)."""
        import numpy as np

        missing = tuple(t for t in dict.fromkeys(texts) if t not in self.vectors)
        if missing and missing not in self._lists:
            self._lists[missing] = self.encoder.embed(list(missing))
        fresh = dict(zip(missing, self._lists[missing], strict=True)) if missing else {}
        if on_batch is not None:
            on_batch(len(texts))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.vectors[t] if t in self.vectors else fresh[t] for t in texts])


class _FoldProgress(ProgressSink):
    """Inside a fold: warnings and lines go through, bars do not (one bar per fold is
    enough; a fold's embedding and predicting would add two bars each)."""

    def __init__(self, outer: ProgressSink) -> None:
        self.outer = outer

    def note(self, message: str) -> None:
        self.outer.note(message)

    def info(self, message: str) -> None:
        self.outer.info(message)


@dataclass(frozen=True)
class CrossValidation:
    """The out-of-fold answers (one per example of :attr:`Folds.examples`, in order)
    and what to store beside them as ``info["cv"]`` (seconds are wall seconds)."""

    predictions: list[Prediction]
    info: dict[str, Any]


def cross_validate(
    folds: Folds,
    workdir: Path,
    new_strategy: Callable[[Path, ProgressSink], Strategy],
    predict: Callable[[Strategy, Sequence[str]], list[Prediction]],
    progress: ProgressSink,
) -> CrossValidation:
    """Fit a fresh strategy per fold and answer the held-out fold with it.

    ``new_strategy(folder, progress)`` builds a fresh instance working in ``folder``
    (``workdir/fold-i``, removed after the fold; ``workdir`` after the last, or on an
    error); ``predict(strategy, texts)`` answers in batches, one answer per text. A
    strategy's exception propagates.
    """
    answers: list[Prediction | None] = [None] * len(folds.examples)
    fit_seconds: list[float] = []
    predict_seconds: list[float] = []
    quiet = _FoldProgress(progress)
    try:
        with progress.task(f"cross-validation ({folds.k} folds)", folds.k) as advance:
            for i in range(folds.k):
                train, val, held = folds.part(i)
                folder = workdir / f"fold-{i}"
                folder.mkdir(parents=True, exist_ok=True)
                strategy = new_strategy(folder, quiet)
                t0 = time.perf_counter()
                strategy.fit(train, val)
                t1 = time.perf_counter()
                out = predict(strategy, [folds.examples[j].text for j in held])
                predict_seconds.append(time.perf_counter() - t1)
                fit_seconds.append(t1 - t0)
                for j, p in zip(held, out, strict=True):
                    answers[j] = p
                shutil.rmtree(folder, ignore_errors=True)
                advance(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert all(p is not None for p in answers), "every example is in exactly one fold"
    return CrossValidation(
        [p for p in answers if p is not None],
        {
            "folds": folds.k,
            "seed": folds.seed,
            "stratified": folds.stratified,
            "fold": list(folds.fold),
            "fit_seconds": fit_seconds,
            "predict_seconds": predict_seconds,
            "seconds": sum(fit_seconds) + sum(predict_seconds),
        },
    )
