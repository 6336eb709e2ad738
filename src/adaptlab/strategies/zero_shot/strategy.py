"""Zero-shot: pick the label whose description is most similar to the input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.core.types import Prediction
from adaptlab.strategies.base import Strategy
from adaptlab.strategies.state import check, load_arrays, save_arrays
from adaptlab.strategies.zero_shot.config import ZeroShotOptions

if TYPE_CHECKING:
    from adaptlab.data import Example


class ZeroShot(Strategy):
    name: ClassVar[str] = "zero-shot"
    cv_refit: ClassVar[bool] = True  # fit embeds the label prompts only
    reads: ClassVar[frozenset[str]] = frozenset({"label_names", "label_descriptions", "encoder"})
    Options = ZeroShotOptions

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        opts = self.options
        assert isinstance(opts, ZeroShotOptions)
        prompts = [
            opts.label_template.format(label=label, description=desc)
            for label, desc in self.ctx.labels.items()
        ]
        self.info["label_prompts"] = prompts
        self._label_vectors = self.ctx.embed(prompts, description="embedding label prompts")

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        sims = self.ctx.encoder.embed(texts) @ self._label_vectors.T
        best = sims.argmax(axis=1)
        names = self.label_names
        return [Prediction(names[i], float(sims[row, i])) for row, i in enumerate(best)]

    def save_state(self, folder: Path) -> dict[str, Any]:
        return {"arrays": save_arrays(folder, "label_vectors.npz", vectors=self._label_vectors)}

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        shape = {"vectors": (len(self.label_names), None)}  # checked before it is allocated
        vectors = load_arrays(folder, state["arrays"], ("vectors",), shape)["vectors"]
        check(
            vectors.ndim == 2 and len(vectors) == len(self.label_names),
            folder,
            "one vector a label",
        )
        self._label_vectors = vectors
