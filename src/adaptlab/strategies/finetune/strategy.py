"""Fine-tune the encoder on the train split, early-stopping on val accuracy.

Two methods, both measured by ``bench/finetune_methods.py``:

* ``head`` — the encoder and a softmax head trained end to end with cross-entropy.
  The head starts from the class centroids of the frozen embeddings, so step 0 is
  already a nearest-centroid classifier and training only has to improve on it.
* ``setfit`` — SetFit-style: contrastive pairs (same label -> cosine 1, different ->
  0) tune the encoder, then a logistic regression is fit on its embeddings.

Every epoch writes ``last.pt`` (weights, optimiser, scheduler, every random state,
curves), so a killed run resumes at the next epoch instead of starting again, and
ends with exactly the predictions of an uninterrupted run (see ``checkpoint.py``).
"""

from __future__ import annotations

import json
import os
import random
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.core.types import CurvePoint, Prediction
from adaptlab.strategies.base import Strategy
from adaptlab.strategies.finetune import checkpoint
from adaptlab.strategies.finetune.checkpoint import CheckpointError, need
from adaptlab.strategies.finetune.config import FinetuneOptions

if TYPE_CHECKING:
    import numpy as np
    import torch

    from adaptlab.backends.sentence_transformers import SentenceTransformerBackend
    from adaptlab.data import Example


class Finetune(Strategy):
    name: ClassVar[str] = "finetune"
    reads: ClassVar[frozenset[str]] = frozenset({"label_names", "encoder"})  # no descriptions
    Options = FinetuneOptions
    trains_weights: ClassVar[bool] = True
    route: ClassVar[str] = "finetune"

    # ---------------------------------------------------------------- helpers

    @property
    def opts(self) -> FinetuneOptions:
        assert isinstance(self.options, FinetuneOptions)
        return self.options

    def _encode(self, model: Any, texts: Sequence[str]) -> torch.Tensor:
        """Differentiable sentence embeddings (the model ends in Normalize)."""
        # sentence-transformers >= 5 names it preprocess() and adds non-tensor keys
        prepare = getattr(model, "preprocess", None) or model.tokenize
        features = prepare(list(texts))
        device = next(model.parameters()).device
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
        out: torch.Tensor = model(features)["sentence_embedding"]
        return out

    def _batches(self, n: int, generator: torch.Generator) -> list[list[int]]:
        import torch

        order = torch.randperm(n, generator=generator).tolist()
        bs = self.opts.batch_size
        return [order[i : i + bs] for i in range(0, n, bs)]

    # ---------------------------------------------------------------- fit

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        import numpy as np
        import torch

        backend = self.ctx.encoder
        assert hasattr(backend, "clone_model"), "finetune needs a trainable encoder backend"
        self._backend: SentenceTransformerBackend = backend  # type: ignore[assignment]
        if self.ctx.workdir.is_symlink():
            from adaptlab.core.errors import ConfigError

            raise ConfigError(
                f"the checkpoint folder is a link to {self.ctx.workdir.resolve()}; fine-tuning "
                "writes only inside the project",
                file=self.ctx.workdir,
                fix=f"remove the link (rm {self.ctx.workdir}) and run again",
            )

        # Every generator training may draw from starts from the seed, and last.pt
        # keeps where each one stands, so a resumed run draws the same numbers.
        torch.manual_seed(self.ctx.seed)
        random.seed(self.ctx.seed)
        np.random.seed(self.ctx.seed % 2**32)
        names = self.label_names
        y_train = [names.index(ex.label) for ex in train]
        y_val = [names.index(ex.label) for ex in val]
        x_train = [ex.text for ex in train]
        x_val = [ex.text for ex in val]

        model = backend.clone_model()
        model.train()
        if self.opts.method == "head":
            self._fit_head(model, x_train, y_train, x_val, y_val)
        else:
            self._fit_setfit(model, x_train, y_train, x_val, y_val)
        model.eval()
        self._tuned = self._backend.with_model(model)
        if self.opts.save_model:
            self._save(model)

    def _fit_head(
        self,
        model: Any,
        x_train: list[str],
        y_train: list[int],
        x_val: list[str],
        y_val: list[int],
    ) -> None:
        import numpy as np
        import torch

        n_labels = len(self.label_names)
        # Centroid init: the head is a nearest-centroid classifier before step one.
        frozen = self.ctx.embed(x_train, description="embedding train split")
        centroids = np.stack([frozen[np.array(y_train) == c].mean(axis=0) for c in range(n_labels)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
        head = torch.nn.Linear(centroids.shape[1], n_labels)
        with torch.no_grad():
            # Normalised embeddings have cosine logits in [-1, 1]; a scale of 20 gives
            # the softmax enough range to be confident, as in SetFit/CosFace heads.
            head.weight.copy_(torch.from_numpy(centroids) * 20.0)
            head.bias.zero_()
        self._head_module = head

        def val_fn() -> tuple[float, float]:
            return self._evaluate_head(model, head, x_val, y_val)

        loss_fn = torch.nn.CrossEntropyLoss()
        labels_t = torch.tensor(y_train)

        def step_fn(batch: list[int]) -> torch.Tensor:
            logits = head(self._encode(model, [x_train[i] for i in batch]))
            loss: torch.Tensor = loss_fn(logits.float(), labels_t[batch])
            return loss

        self._train_loop(model, [head], len(x_train), step_fn, val_fn, early_stopping=bool(x_val))

    def _fit_setfit(
        self,
        model: Any,
        x_train: list[str],
        y_train: list[int],
        x_val: list[str],
        y_val: list[int],
    ) -> None:
        import torch

        pairs = _contrastive_pairs(y_train, self.opts.pair_iterations, self.ctx.seed)
        left = [x_train[a] for a, _, _ in pairs]
        right = [x_train[b] for _, b, _ in pairs]
        target = torch.tensor([t for _, _, t in pairs], dtype=torch.float32)

        def step_fn(batch: list[int]) -> torch.Tensor:
            u = self._encode(model, [left[i] for i in batch])
            v = self._encode(model, [right[i] for i in batch])
            cos = torch.nn.functional.cosine_similarity(u.float(), v.float())
            return torch.nn.functional.mse_loss(cos, target[batch])

        def val_fn() -> tuple[float, float]:
            self._fit_logreg(model, x_train, y_train)
            return self._evaluate_logreg(model, x_val, y_val)

        self._train_loop(model, [], len(pairs), step_fn, val_fn, early_stopping=bool(x_val))
        self._fit_logreg(model, x_train, y_train)

    # ---------------------------------------------------------------- loop

    def _train_loop(
        self,
        model: Any,
        heads: list[torch.nn.Module],
        n_items: int,
        step_fn: Any,
        val_fn: Any,
        early_stopping: bool = True,
    ) -> None:
        import torch

        opts = self.opts
        params = [
            {"params": list(model.parameters()), "lr": opts.learning_rate},
            *({"params": list(h.parameters()), "lr": opts.head_learning_rate} for h in heads),
        ]
        steps_per_epoch = -(-n_items // opts.batch_size)
        total = steps_per_epoch * opts.epochs
        warmup = int(total * opts.warmup_ratio)

        def schedule(s: int) -> float:
            if s < warmup:
                return (s + 1) / max(1, warmup)
            return max(0.0, (total - s) / max(1, total - warmup))

        def fresh() -> tuple[Any, Any, torch.Generator, dict[str, Any]]:
            optimizer = torch.optim.AdamW(params, weight_decay=opts.weight_decay)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
            generator = torch.Generator().manual_seed(self.ctx.seed)
            state: dict[str, Any] = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0}
            return optimizer, scheduler, generator, state

        optimizer, scheduler, generator, state = fresh()
        best_state = self._resume(model, heads, optimizer, scheduler, generator, state)
        if best_state is not None:
            self.info["resumed_from_epoch"] = state["epoch"]
        elif state["epoch"]:  # a checkpoint failed half-way through being applied
            optimizer, scheduler, generator, state = fresh()

        step = state["epoch"] * steps_per_epoch
        with self.ctx.progress.task(f"fine-tuning ({opts.method})", total) as advance:
            advance(step)
            while state["epoch"] < opts.epochs and state["bad_epochs"] < opts.patience:
                epoch = state["epoch"]
                model.train()
                window: list[float] = []
                every = max(1, steps_per_epoch // 4)  # four train-loss points per epoch
                for i, batch in enumerate(self._batches(n_items, generator), start=1):
                    with self._backend.autocast():
                        loss = step_fn(batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    window.append(float(loss.detach()))
                    advance(1)
                    if i % every == 0 or i == steps_per_epoch:
                        mean = sum(window) / len(window)
                        self.curves.append(
                            CurvePoint(step, epoch + i / steps_per_epoch, "train", "loss", mean)
                        )
                        window.clear()
                model.eval()
                val_loss, val_acc = val_fn()
                state["epoch"] = epoch + 1
                self.curves.append(CurvePoint(step, epoch + 1, "val", "loss", val_loss))
                self.curves.append(CurvePoint(step, epoch + 1, "val", "accuracy", val_acc))
                # Without a val split there is nothing to stop on: every epoch is "best".
                if val_acc > state["best"] or not early_stopping:
                    state.update(best=val_acc, best_epoch=epoch + 1, bad_epochs=0)
                    best_state = self._snapshot(model, heads)
                    checkpoint.save(best_state, self.ctx.workdir / "best.pt")
                else:
                    state["bad_epochs"] += 1
                self._save_last(model, heads, optimizer, scheduler, generator, state)
        if best_state is not None:
            model.load_state_dict(best_state["model"])
            for h, sd in zip(heads, best_state["heads"], strict=True):
                h.load_state_dict(sd)
        self.info.update(
            best_epoch=state["best_epoch"],
            best_val_accuracy=state["best"],
            epochs_run=state["epoch"],
            stopped_early=state["epoch"] < opts.epochs,
            steps_per_epoch=steps_per_epoch,
        )

    # ---------------------------------------------------------------- checkpoints

    @staticmethod
    def _snapshot(model: Any, heads: list[torch.nn.Module]) -> dict[str, Any]:
        import copy

        return {
            "model": copy.deepcopy(model.state_dict()),
            "heads": [copy.deepcopy(h.state_dict()) for h in heads],
        }

    def _save_last(
        self,
        model: Any,
        heads: list[torch.nn.Module],
        optimizer: Any,
        scheduler: Any,
        generator: torch.Generator,
        state: dict[str, Any],
    ) -> None:
        checkpoint.save(
            {
                **self._snapshot(model, heads),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "rng": checkpoint.rng_state(),
                "state": dict(state),
                "curves": [p.__dict__ for p in self.curves],
            },
            self.ctx.workdir / "last.pt",
        )

    def _resume(
        self,
        model: Any,
        heads: list[torch.nn.Module],
        optimizer: Any,
        scheduler: Any,
        generator: torch.Generator,
        state: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Apply last.pt and return best.pt's weights; None (and nothing applied) if unusable.

        The files are untrusted (see ``checkpoint.py``): one that cannot be read as
        tensors, or does not fit this run, is deleted with a warning, and training
        starts from scratch.
        """
        import torch

        last, best = self.ctx.workdir / "last.pt", self.ctx.workdir / "best.pt"
        odd = [p.name for p in (last, best) if os.path.lexists(p) and not _regular(p)]
        if odd:  # a link, folder or device where a checkpoint belongs: never read through it
            self._discard(f"{' and '.join(odd)} in {self.ctx.workdir} is not a regular file")
            return None
        if not (last.exists() and best.exists()):
            return None
        current: dict[str, Any] | None = None
        rng: dict[str, Any] = {}
        try:
            ckpt, best_state = checkpoint.load(last), checkpoint.load(best)
            checkpoint.check_weights(ckpt.get("model"), model, "model")
            checkpoint.check_weights(best_state.get("model"), model, "best model")
            for what in (ckpt, best_state):
                saved = what.get("heads")
                if not (isinstance(saved, list) and len(saved) == len(heads)):
                    raise CheckpointError("it does not match this training run (heads)")
                for h, sd in zip(heads, saved, strict=True):
                    checkpoint.check_weights(sd, h, "head")
            checkpoint.check_optimizer(ckpt.get("optimizer"), optimizer)
            checkpoint.check_plain(ckpt.get("scheduler"), scheduler.state_dict(), "scheduler")
            checkpoint.check_plain(ckpt.get("state"), state, "progress")
            need(0 < ckpt["state"]["epoch"] <= self.opts.epochs, "epoch")
            gen = ckpt.get("generator")
            need(isinstance(gen, torch.Tensor) and gen.dtype == torch.uint8, "batch order")
            curves = ckpt.get("curves")
            if not isinstance(curves, list):
                raise CheckpointError("it does not match this training run (curves)")
            points = [CurvePoint(**p) for p in curves]
            need(all(isinstance(p.value, float | int) for p in points), "curves")
            # Everything checked: apply. set_rng_state checks its parts before it sets any.
            current, rng = self._snapshot(model, heads), checkpoint.rng_state()
            checkpoint.set_rng_state(ckpt.get("rng"))
            model.load_state_dict(ckpt["model"])
            for h, sd in zip(heads, ckpt["heads"], strict=True):
                h.load_state_dict(sd)
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            generator.set_state(ckpt["generator"])
            state.update(ckpt["state"])
            self.curves = points
            return best_state
        except (
            CheckpointError,
            TypeError,
            ValueError,
            KeyError,
            AttributeError,
            RuntimeError,
        ) as exc:
            if current is not None:  # undo a half-applied checkpoint
                model.load_state_dict(current["model"])
                for h, sd in zip(heads, current["heads"], strict=True):
                    h.load_state_dict(sd)
                checkpoint.set_rng_state(rng)
                state["epoch"] = -1  # tells the caller to rebuild optimiser and scheduler
            reason = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}"
            self._discard(f"{last.name}/{best.name} in {self.ctx.workdir}: {reason}")
            return None

    def _discard(self, message: str) -> None:
        for name in ("last.pt", "best.pt"):
            _remove(self.ctx.workdir / name)
        self.info["checkpoint_discarded"] = message
        self.ctx.progress.note(
            f"resume checkpoint discarded, fine-tuning starts from scratch: {message}"
        )

    def _save(self, model: Any) -> None:
        import numpy as np

        out = self.ctx.workdir / "model"
        _remove(out)  # a stale model folder may hold links; write into a fresh one
        model.save(str(out))
        if self.opts.method == "head":
            head = self._head_module
            np.savez(
                out / "adaptlab_head.npz",
                weight=head.weight.detach().numpy(),
                bias=head.bias.detach().numpy(),
            )
        else:  # the SetFit classifier, for export (skops: no pickle)
            from adaptlab.strategies.state import save_sklearn

            save_sklearn(out, "adaptlab_logreg.skops", self._logreg)
        (out / "adaptlab_labels.json").write_text(json.dumps(self.label_names))
        self.info["checkpoint"] = str(Path(out))

    # ---------------------------------------------------------------- export

    def restore_fit(
        self, train: Sequence[Example], val: Sequence[Example], info: dict[str, Any]
    ) -> None:
        """Load the model the run saved (``<checkpoint>/model``) instead of training again."""
        from adaptlab.core.errors import AdaptlabError
        from adaptlab.strategies.state import StateError, load_json

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
        from adaptlab.backends.sentence_transformers import load_sentence_transformer

        model = load_sentence_transformer(str(folder), backend.device)  # type: ignore[attr-defined]
        self._backend = backend.with_model(model)  # type: ignore[attr-defined]
        self._tuned = self._backend
        self._load_classifier(folder, "adaptlab_head.npz", "adaptlab_logreg.skops")

    def save_state(self, folder: Path) -> dict[str, Any]:
        from adaptlab.strategies.state import save_arrays, save_sklearn

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

        from adaptlab.strategies.state import check, load_arrays, load_sklearn

        n = len(self.label_names)
        if self.opts.method != "head":
            self._logreg = load_sklearn(folder, logreg_file)
            classes = list(getattr(self._logreg, "classes_", []))
            check(bool(classes) and all(0 <= int(c) < n for c in classes), folder, "classes")
            return
        arrays = load_arrays(folder, head_file, ("weight", "bias"))
        w, b = arrays["weight"], arrays["bias"]
        check(w.ndim == 2 and w.shape[0] == n and b.shape == (n,), folder, "head shape")
        head = torch.nn.Linear(arrays["weight"].shape[1], arrays["weight"].shape[0])
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(arrays["weight"]))
            head.bias.copy_(torch.from_numpy(arrays["bias"]))
        self._head_module = head

    # ---------------------------------------------------------------- heads

    def _evaluate_head(
        self, model: Any, head: torch.nn.Module, texts: list[str], y: list[int]
    ) -> tuple[float, float]:
        import torch

        if not texts:
            return 0.0, 0.0
        with torch.no_grad(), self._backend.autocast():
            logits = torch.cat(
                [
                    head(self._encode(model, texts[i : i + 64])).float()
                    for i in range(0, len(texts), 64)
                ]
            )
        target = torch.tensor(y)
        loss = float(torch.nn.functional.cross_entropy(logits, target))
        acc = float((logits.argmax(dim=1) == target).float().mean())
        return loss, acc

    def _embed_with(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        return self._backend.with_model(model).embed(texts)

    def _fit_logreg(self, model: Any, texts: list[str], y: list[int]) -> None:
        from sklearn.linear_model import LogisticRegression

        model.eval()
        x = self._embed_with(model, texts)
        self._logreg = LogisticRegression(max_iter=200, random_state=self.ctx.seed).fit(x, y)

    def _evaluate_logreg(self, model: Any, texts: list[str], y: list[int]) -> tuple[float, float]:
        import numpy as np

        if not texts:
            return 0.0, 0.0
        proba = self._logreg.predict_proba(self._embed_with(model, texts))
        cols = {c: i for i, c in enumerate(self._logreg.classes_)}
        p_true = np.array([proba[r, cols[t]] if t in cols else 1e-12 for r, t in enumerate(y)])
        loss = float(-np.log(np.clip(p_true, 1e-12, 1)).mean())
        acc = float((self._logreg.classes_[proba.argmax(axis=1)] == np.array(y)).mean())
        return loss, acc

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


def _regular(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def _remove(path: Path) -> None:
    """Remove a file, link (not its target) or folder (links inside as links)."""
    import shutil

    if not os.path.lexists(path):
        return
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _contrastive_pairs(y: list[int], iterations: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit's sampling: per example and iteration, one positive and one negative pair."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(y):
        by_label.setdefault(label, []).append(i)
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for i, label in enumerate(y):
            same = by_label[label]
            if len(same) > 1:
                j = rng.choice(same)
                while j == i:
                    j = rng.choice(same)
                pairs.append((i, j, 1.0))
            j = rng.randrange(len(y))
            while y[j] == label:
                j = rng.randrange(len(y))
            pairs.append((i, j, 0.0))
    rng.shuffle(pairs)
    return pairs
