"""Fine-tune a sentence encoder for classification, early-stopping on val accuracy.

Two methods, both measured by ``bench/finetune_methods.py``:

* ``head`` — the encoder and a softmax head trained end to end with cross-entropy.
  The head starts from the class centroids of the frozen embeddings, so step 0 is
  already a nearest-centroid classifier and training only has to improve on it.
* ``setfit`` — SetFit-style: contrastive pairs (same label -> cosine 1, different ->
  0) tune the encoder, then a logistic regression is fit on its embeddings.

Every epoch writes ``last.pt`` (weights, optimiser, scheduler, every random state,
curves), so a killed run resumes at the next epoch instead of starting again, and
ends with exactly the predictions of an uninterrupted run (see ``checkpoint.py``).

The trainer knows texts, label ids and a folder; the ``finetune`` strategy turns a
project's examples into them and keeps what :func:`train_encoder` returns.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.core.progress import ProgressSink
from adaptlab.core.types import CurvePoint
from adaptlab.train import checkpoint
from adaptlab.train.checkpoint import CheckpointError, need
from adaptlab.train.options import EncoderTrainOptions

if TYPE_CHECKING:
    import numpy as np
    import torch

    from adaptlab.backends.sentence_transformers import SentenceTransformerBackend

#: The frozen encoder's embeddings of some texts (the ``head`` method's centroid init).
FrozenEmbed = Callable[[list[str]], "np.ndarray"]


@dataclass
class EncoderTrainResult:
    """The tuned encoder (best epoch, eval mode) and its classifier.

    ``head`` is the softmax head (method ``head``), ``logreg`` the scikit-learn
    logistic regression (method ``setfit``); the other is None. ``info`` holds
    ``best_epoch``, ``best_val_accuracy``, ``epochs_run``, ``stopped_early`` and
    ``steps_per_epoch``, and ``resumed_from_epoch`` or ``checkpoint_discarded``
    when a checkpoint was found.
    """

    model: Any
    head: torch.nn.Linear | None
    logreg: Any
    curves: list[CurvePoint] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


def train_encoder(
    backend: SentenceTransformerBackend,
    options: EncoderTrainOptions,
    x_train: list[str],
    y_train: list[int],
    x_val: list[str],
    y_val: list[int],
    *,
    n_labels: int,
    seed: int,
    workdir: Path,
    frozen_embed: FrozenEmbed,
    progress: ProgressSink | None = None,
) -> EncoderTrainResult:
    """Fine-tune a copy of ``backend``'s model on label ids ``0..n_labels-1``.

    ``workdir`` holds the resume checkpoints (``last.pt``, ``best.pt``): a run
    killed after an epoch continues from there when called again with the same
    arguments. ``backend``'s own model is never changed.
    """
    import numpy as np
    import torch

    checkpoint.refuse_linked_folder(workdir)
    # Every generator training may draw from starts from the seed, and last.pt
    # keeps where each one stands, so a resumed run draws the same numbers.
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    run = _Run(backend, options, seed, workdir, progress or ProgressSink())
    model = backend.clone_model()
    model.train()
    if options.method == "head":
        run.fit_head(model, x_train, y_train, x_val, y_val, n_labels, frozen_embed)
    else:
        run.fit_setfit(model, x_train, y_train, x_val, y_val)
    model.eval()
    return EncoderTrainResult(model, run.head, run.logreg, run.curves, run.info)


def contrastive_pairs(y: list[int], iterations: int, seed: int) -> list[tuple[int, int, float]]:
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


class _Run:
    """One call of :func:`train_encoder`: its options, folder, curves and info."""

    def __init__(
        self,
        backend: SentenceTransformerBackend,
        options: EncoderTrainOptions,
        seed: int,
        workdir: Path,
        progress: ProgressSink,
    ) -> None:
        self.backend = backend
        self.opts = options
        self.seed = seed
        self.workdir = workdir
        self.progress = progress
        self.curves: list[CurvePoint] = []
        self.info: dict[str, object] = {}
        self.head: torch.nn.Linear | None = None
        self.logreg: Any = None

    # ---------------------------------------------------------------- helpers

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

    # ---------------------------------------------------------------- methods

    def fit_head(
        self,
        model: Any,
        x_train: list[str],
        y_train: list[int],
        x_val: list[str],
        y_val: list[int],
        n_labels: int,
        frozen_embed: FrozenEmbed,
    ) -> None:
        import numpy as np
        import torch

        # Centroid init: the head is a nearest-centroid classifier before step one.
        frozen = frozen_embed(x_train)
        centroids = np.stack([frozen[np.array(y_train) == c].mean(axis=0) for c in range(n_labels)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
        head = torch.nn.Linear(centroids.shape[1], n_labels)
        with torch.no_grad():
            # Normalised embeddings have cosine logits in [-1, 1]; a scale of 20 gives
            # the softmax enough range to be confident, as in SetFit/CosFace heads.
            head.weight.copy_(torch.from_numpy(centroids) * 20.0)
            head.bias.zero_()
        self.head = head

        def val_fn() -> tuple[float, float]:
            return self._evaluate_head(model, head, x_val, y_val)

        loss_fn = torch.nn.CrossEntropyLoss()
        labels_t = torch.tensor(y_train)

        def step_fn(batch: list[int]) -> torch.Tensor:
            logits = head(self._encode(model, [x_train[i] for i in batch]))
            loss: torch.Tensor = loss_fn(logits.float(), labels_t[batch])
            return loss

        self._train_loop(model, [head], len(x_train), step_fn, val_fn, early_stopping=bool(x_val))

    def fit_setfit(
        self,
        model: Any,
        x_train: list[str],
        y_train: list[int],
        x_val: list[str],
        y_val: list[int],
    ) -> None:
        import torch

        pairs = contrastive_pairs(y_train, self.opts.pair_iterations, self.seed)
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
            generator = torch.Generator().manual_seed(self.seed)
            state: dict[str, Any] = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0}
            return optimizer, scheduler, generator, state

        optimizer, scheduler, generator, state = fresh()
        best_state = self._resume(model, heads, optimizer, scheduler, generator, state)
        if best_state is not None:
            self.info["resumed_from_epoch"] = state["epoch"]
        elif state["epoch"]:  # a checkpoint failed half-way through being applied
            optimizer, scheduler, generator, state = fresh()

        step = state["epoch"] * steps_per_epoch
        with self.progress.task(f"fine-tuning ({opts.method})", total) as advance:
            advance(step)
            while state["epoch"] < opts.epochs and state["bad_epochs"] < opts.patience:
                epoch = state["epoch"]
                model.train()
                window: list[float] = []
                every = max(1, steps_per_epoch // 4)  # four train-loss points per epoch
                for i, batch in enumerate(self._batches(n_items, generator), start=1):
                    with self.backend.autocast():
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
                    checkpoint.save(best_state, self.workdir / "best.pt")
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
            self.workdir / "last.pt",
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

        last, best = self.workdir / "last.pt", self.workdir / "best.pt"
        odd = [p.name for p in (last, best) if os.path.lexists(p) and not checkpoint.is_regular(p)]
        if odd:  # a link, folder or device where a checkpoint belongs: never read through it
            self._discard(f"{' and '.join(odd)} in {self.workdir} is not a regular file")
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
            self._discard(f"{last.name}/{best.name} in {self.workdir}: {reason}")
            return None

    def _discard(self, message: str) -> None:
        for name in ("last.pt", "best.pt"):
            checkpoint.remove(self.workdir / name)
        self.info["checkpoint_discarded"] = message
        self.progress.note(
            f"resume checkpoint discarded, fine-tuning starts from scratch: {message}"
        )

    # ---------------------------------------------------------------- classifiers

    def _evaluate_head(
        self, model: Any, head: torch.nn.Module, texts: list[str], y: list[int]
    ) -> tuple[float, float]:
        import torch

        if not texts:
            return 0.0, 0.0
        with torch.no_grad(), self.backend.autocast():
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
        return self.backend.with_model(model).embed(texts)

    def _fit_logreg(self, model: Any, texts: list[str], y: list[int]) -> None:
        from sklearn.linear_model import LogisticRegression

        model.eval()
        x = self._embed_with(model, texts)
        self.logreg = LogisticRegression(max_iter=200, random_state=self.seed).fit(x, y)

    def _evaluate_logreg(self, model: Any, texts: list[str], y: list[int]) -> tuple[float, float]:
        import numpy as np

        if not texts:
            return 0.0, 0.0
        proba = self.logreg.predict_proba(self._embed_with(model, texts))
        cols = {c: i for i, c in enumerate(self.logreg.classes_)}
        p_true = np.array([proba[r, cols[t]] if t in cols else 1e-12 for r, t in enumerate(y)])
        loss = float(-np.log(np.clip(p_true, 1e-12, 1)).mean())
        acc = float((self.logreg.classes_[proba.argmax(axis=1)] == np.array(y)).mean())
        return loss, acc
