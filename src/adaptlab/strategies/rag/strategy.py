"""RAG for classification: retrieve the nearest labelled examples and let them vote."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.core.types import Prediction
from adaptlab.strategies.base import Strategy
from adaptlab.strategies.rag.config import RagOptions
from adaptlab.strategies.state import check, load_arrays, save_arrays
from adaptlab.strategies.tuning import Outcome, TrialStore, successive_halving

if TYPE_CHECKING:
    from adaptlab.data import Example


class Rag(Strategy):
    name: ClassVar[str] = "rag"
    route: ClassVar[str] = "rag"
    cv_refit: ClassVar[bool] = True  # fit embeds the index, nothing trains
    reads: ClassVar[frozenset[str]] = frozenset({"label_names", "encoder"})  # no descriptions
    Options = RagOptions
    #: 1: validation answers no longer find the validation examples in the index.
    #: 2: the train and validation texts are embedded as two lists (shared with the
    #: run's cross-validation table), not one: the vectors' last digits may differ.
    revision: ClassVar[int] = 2

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        import numpy as np

        opts = self.options
        assert isinstance(opts, RagOptions)
        # Train and val as the two lists a run embeds anyway (the cross-validation table
        # looks them up too), so a run computes each once.
        parts = [train, val] if opts.include_val and val else [train]
        indexed = [ex for part in parts for ex in part]
        self._index = np.concatenate(
            [self.ctx.embed([ex.text for ex in part], description="indexing") for part in parts]
        )
        names = self.label_names
        self._labels = np.array([names.index(ex.label) for ex in indexed])
        self._n_train = len(train)  # the validation examples, if indexed, come after
        self.info["indexed"] = len(indexed)
        self._setting: dict[str, Any] = {"top_k": opts.top_k, "weighting": opts.weighting}
        if opts.tune is not None:
            self._tune(val, opts)

    def _tune(self, val: Sequence[Example], opts: RagOptions) -> None:
        """Choose top_k and weighting on val (:mod:`adaptlab.strategies.tuning`, a grid):
        each validation input votes among the train examples, as in :meth:`predict_val`."""
        import hashlib
        import json

        assert opts.tune is not None
        texts = [ex.text for ex in val]
        sims = self.ctx.encoder.embed(texts) @ self._index[: self._n_train].T if texts else None

        def evaluate(params: dict[str, Any], fraction: float, folder: Path) -> Outcome:
            assert sims is not None
            preds = self._vote_sims(sims, params["top_k"], params["weighting"])
            return Outcome(
                [1.0 if p.label == ex.label else 0.0 for p, ex in zip(preds, val, strict=True)]
            )

        data = json.dumps([[ex.text, ex.label] for ex in val] + [self._labels.tolist()])
        default, space = opts.tuning_space()
        search = successive_halving(
            default,
            space,
            evaluate,
            TrialStore(self.ctx.workdir / "tuning", hashlib.sha256(data.encode()).hexdigest()),
            max_minutes=opts.tune.max_minutes,
            eta=opts.tune.eta,
            units=lambda p, f: 1.0,
            n_val=len(val),
            note=self.ctx.progress.note,
            halving=False,
        )
        self.info["tuning"] = search.record
        self._setting = dict(search.tuned)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self._vote(texts, self._index.shape[0])

    def predict_val(self, texts: Sequence[str]) -> list[Prediction]:
        """Vote among the train examples only: a validation input would find itself."""
        return self._vote(texts, self._n_train)

    def _vote(self, texts: Sequence[str], n_indexed: int) -> list[Prediction]:
        sims = self.ctx.encoder.embed(texts) @ self._index[:n_indexed].T
        return self._vote_sims(sims, self._setting["top_k"], self._setting["weighting"])

    def _vote_sims(self, sims: Any, top_k: int, weighting: str) -> list[Prediction]:
        """Predictions from a (texts x indexed) cosine-similarity matrix."""
        import numpy as np

        k = min(top_k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        names = self.label_names
        out = []
        for row, idx in enumerate(top):
            weights = sims[row, idx] if weighting == "similarity" else np.ones(k)
            votes = np.bincount(
                self._labels[idx], weights=np.clip(weights, 0, None) + 1e-9, minlength=len(names)
            )
            best = int(votes.argmax())
            out.append(Prediction(names[best], float(votes[best] / votes.sum())))
        return out

    def save_state(self, folder: Path) -> dict[str, Any]:
        name = save_arrays(folder, "knn_index.npz", vectors=self._index, labels=self._labels)
        return {"arrays": name, "n_train": self._n_train, "setting": self._setting}

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        arrays = load_arrays(
            folder,
            state["arrays"],
            ("vectors", "labels"),
            {"vectors": (None, None), "labels": (None,)},
        )
        vectors, labels = arrays["vectors"], arrays["labels"]
        n = len(self.label_names)
        check(vectors.ndim == 2 and len(vectors) == len(labels) > 0, folder, "index rows")
        check(
            labels.dtype.kind in "iu" and labels.min() >= 0 and labels.max() < n, folder, "labels"
        )
        self._index, self._labels = vectors, labels
        self._n_train = int(state["n_train"])
        check(0 < self._n_train <= len(vectors), folder, "n_train")
        opts = self.options
        assert isinstance(opts, RagOptions)
        setting = state.get("setting", {"top_k": opts.top_k, "weighting": opts.weighting})
        check(
            isinstance(setting, dict)
            and isinstance(setting.get("top_k"), int)
            and setting["top_k"] >= 1
            and setting.get("weighting") in ("similarity", "uniform"),
            folder,
            "setting",
        )
        self._setting = {"top_k": setting["top_k"], "weighting": setting["weighting"]}
