"""Fine-tune the encoder on the train split, early-stopping on val accuracy.

The training itself — the ``head`` and ``setfit`` methods, early stopping, and the
``last.pt``/``best.pt`` checkpoints a killed run resumes from — is
:func:`adaptlab.train.encoder.train_encoder`. This strategy hands it the project's
texts and label ids, keeps the tuned encoder and its classifier, predicts with
them, and saves them (``<checkpoint>/model``, and the export's state).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends.sentence_transformers import load_sentence_transformer
from adaptlab.core.errors import AdaptlabError
from adaptlab.core.types import Prediction
from adaptlab.strategies.base import Strategy
from adaptlab.strategies.finetune.config import FinetuneOptions
from adaptlab.strategies.finetune.tune import fit_tuned
from adaptlab.strategies.state import (
    StateError,
    check,
    load_arrays,
    load_json,
    load_sklearn,
    save_arrays,
    save_sklearn,
)
from adaptlab.train.checkpoint import remove
from adaptlab.train.encoder import train_encoder

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.backends.sentence_transformers import SentenceTransformerBackend
    from adaptlab.data import Example
    from adaptlab.train.encoder import EncoderTrainResult


class Finetune(Strategy):
    name: ClassVar[str] = "finetune"
    reads: ClassVar[frozenset[str]] = frozenset({"label_names", "encoder"})  # no descriptions
    Options = FinetuneOptions
    trains_weights: ClassVar[bool] = True
    route: ClassVar[str] = "finetune"

    @property
    def opts(self) -> FinetuneOptions:
        assert isinstance(self.options, FinetuneOptions)
        return self.options

    # ---------------------------------------------------------------- fit

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        backend = self.ctx.encoder
        assert hasattr(backend, "clone_model"), "finetune needs a trainable encoder backend"
        self._backend: SentenceTransformerBackend = backend  # type: ignore[assignment]
        names = self.label_names
        if self.opts.tune is not None:  # a search on val; see strategies/finetune/tune.py
            fit_tuned(self, train, val)
            return

        def frozen_embed(texts: list[str]) -> np.ndarray:
            return self.ctx.embed(texts, description="embedding train split")

        result = train_encoder(
            self._backend,
            self.opts,
            [ex.text for ex in train],
            [names.index(ex.label) for ex in train],
            [ex.text for ex in val],
            [names.index(ex.label) for ex in val],
            n_labels=len(names),
            seed=self.ctx.seed,
            workdir=self.ctx.workdir,
            frozen_embed=frozen_embed,
            progress=self.ctx.progress,
        )
        self.curves = result.curves
        self.info.update(result.info)
        self.adopt(result)
        if self.opts.save_model:
            self._save(result.model)

    def adopt(self, result: EncoderTrainResult) -> None:
        """Predict with ``result``'s encoder and classifier from now on."""
        if result.head is not None:
            self._head_module = result.head
        else:
            self._logreg = result.logreg
        self._tuned = self._backend.with_model(result.model)

    def _save(self, model: Any) -> None:
        self.save_model(model, self.ctx.workdir / "model")
        self.info["checkpoint"] = str(self.ctx.workdir / "model")

    def save_model(self, model: Any, out: Path) -> None:
        """Write the encoder, its classifier and the labels into a fresh folder ``out``."""
        import numpy as np

        remove(out)  # a stale model folder may hold links; write into a fresh one
        model.save(str(out))
        if self.opts.method == "head":
            head = self._head_module
            np.savez(
                out / "adaptlab_head.npz",
                weight=head.weight.detach().numpy(),
                bias=head.bias.detach().numpy(),
            )
        else:  # the SetFit classifier, for export (skops: no pickle)
            save_sklearn(out, "adaptlab_logreg.skops", self._logreg)
        (out / "adaptlab_labels.json").write_text(json.dumps(self.label_names))

    # ---------------------------------------------------------------- export

    def restore_fit(
        self, train: Sequence[Example], val: Sequence[Example], info: dict[str, Any]
    ) -> None:
        """Load the model the run saved (``<checkpoint>/model``) instead of training again."""
        folder = self.ctx.workdir / "model"
        rerun = (
            f"run the candidate again with save_model: true (adaptlab run -c NAME --force), "
            f"then export; the folder {folder} must hold the fine-tuned model"
        )
        if not (folder / "adaptlab_labels.json").is_file() or folder.is_symlink():
            raise AdaptlabError(
                "this fine-tuned candidate's model was not kept (save_model: false, or "
                "the checkpoint folder was cleaned)",
                file=folder,
                fix=rerun,
                code="no-checkpoint",
            )
        if load_json(folder, "adaptlab_labels.json") != self.label_names:
            raise StateError(
                "was trained on other labels than the project's", file=folder, fix=rerun
            )
        backend = self.ctx.encoder
        assert hasattr(backend, "with_model"), "finetune needs a sentence-transformers backend"
        model = load_sentence_transformer(str(folder), backend.device)  # type: ignore[attr-defined]
        self._backend = backend.with_model(model)
        self._tuned = self._backend
        self._load_classifier(folder, "adaptlab_head.npz", "adaptlab_logreg.skops")

    def save_state(self, folder: Path) -> dict[str, Any]:
        # The tuned encoder becomes the export's encoder (``encoder/``, safetensors).
        self._tuned.model.save(str(folder / "encoder"))
        if self.opts.method == "head":
            head = self._head_module
            name = save_arrays(
                folder,
                "head.npz",
                weight=head.weight.detach().numpy(),
                bias=head.bias.detach().numpy(),
            )
            return {"encoder_folder": "encoder", "head": name}
        name = save_sklearn(folder, "logreg.skops", self._logreg)
        return {"encoder_folder": "encoder", "classifier": name}

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        # The export loader made the tuned encoder this context's encoder.
        self._backend = self.ctx.encoder  # type: ignore[assignment]
        self._tuned = self._backend
        self._load_classifier(folder, state.get("head", ""), state.get("classifier", ""))

    def _load_classifier(self, folder: Path, head_file: str, logreg_file: str) -> None:
        """The softmax head (``head`` method) or the SetFit logistic regression."""
        import torch

        n = len(self.label_names)
        if self.opts.method != "head":
            self._logreg = load_sklearn(folder, logreg_file)
            classes = list(getattr(self._logreg, "classes_", []))
            check(bool(classes) and all(0 <= int(c) < n for c in classes), folder, "classes")
            return
        arrays = load_arrays(
            folder, head_file, ("weight", "bias"), {"weight": (n, None), "bias": (n,)}
        )
        w, b = arrays["weight"], arrays["bias"]
        check(w.ndim == 2 and w.shape[0] == n and b.shape == (n,), folder, "head shape")
        head = torch.nn.Linear(arrays["weight"].shape[1], arrays["weight"].shape[0])
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(arrays["weight"]))
            head.bias.copy_(torch.from_numpy(arrays["bias"]))
        self._head_module = head

    # ---------------------------------------------------------------- predict

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        import numpy as np

        names = self.label_names
        x = self._tuned.embed(texts)
        if self.opts.method == "head":
            w = self._head_module.weight.detach().numpy()
            b = self._head_module.bias.detach().numpy()
            logits = x @ w.T + b
            logits -= logits.max(axis=1, keepdims=True)
            proba = np.exp(logits)
            proba /= proba.sum(axis=1, keepdims=True)
            classes = np.arange(len(names))
        else:
            proba = self._logreg.predict_proba(x)
            classes = self._logreg.classes_
        best = proba.argmax(axis=1)
        return [Prediction(names[int(classes[i])], float(proba[r, i])) for r, i in enumerate(best)]
