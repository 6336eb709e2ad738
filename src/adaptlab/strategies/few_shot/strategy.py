"""Few-shot: k examples per class, a light classifier on frozen embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.core.types import Prediction
from adaptlab.strategies.base import Strategy
from adaptlab.strategies.few_shot.config import FewShotOptions
from adaptlab.strategies.few_shot.selectors import SELECTORS
from adaptlab.strategies.state import check, load_sklearn, save_sklearn

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.data import Example


def fit_classifier(x: np.ndarray, y: Sequence[str], kind: str, seed: int, max_iter: int) -> Any:
    """Logistic regression (MTEB's few-shot protocol) or a nearest-centroid model."""
    if kind == "centroid":
        from sklearn.neighbors import NearestCentroid

        return NearestCentroid().fit(x, list(y))
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=max_iter, random_state=seed).fit(x, list(y))


def predict_classifier(model: Any, x: np.ndarray) -> list[Prediction]:
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
        best = proba.argmax(axis=1)
        return [Prediction(str(model.classes_[i]), float(proba[r, i])) for r, i in enumerate(best)]
    return [Prediction(str(label), 1.0) for label in model.predict(x)]


class FewShot(Strategy):
    name: ClassVar[str] = "few-shot"
    cv_refit: ClassVar[bool] = True  # k shots a class and a light classifier
    reads: ClassVar[frozenset[str]] = frozenset({"label_names", "encoder"})  # no descriptions
    Options = FewShotOptions

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        opts = self.options
        assert isinstance(opts, FewShotOptions)
        shots = SELECTORS[opts.selector](train, opts.k, self.ctx.seed)
        self.info["shots"] = [ex.id for ex in shots]
        self._shots = [{"id": ex.id, "text": ex.text, "label": ex.label} for ex in shots]
        x = self.ctx.embed([ex.text for ex in shots], description="embedding shots")
        self._model = fit_classifier(
            x, [ex.label for ex in shots], opts.classifier, self.ctx.seed, opts.max_iter
        )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return predict_classifier(self._model, self.ctx.encoder.embed(texts))

    def save_state(self, folder: Path) -> dict[str, Any]:
        return {
            "classifier": save_sklearn(folder, "classifier.skops", self._model),
            "shots": self._shots,  # what the classifier was fit on, for the model card
        }

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        model = load_sklearn(folder, state["classifier"])
        classes = [str(c) for c in getattr(model, "classes_", [])]
        check(bool(classes) and set(classes) <= set(self.label_names), folder, "classifier labels")
        self._model = model
