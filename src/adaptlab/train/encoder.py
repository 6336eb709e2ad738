"""Fine-tune a sentence encoder for classification, early-stopping on val accuracy.

Two methods, both measured by ``bench/finetune_methods.py``:

* ``head`` — the encoder and a softmax head trained end to end with cross-entropy.
  The head starts from the class centroids of the frozen embeddings, so step 0 is
  already a nearest-centroid classifier and training only has to improve on it.
* ``setfit`` — SetFit-style: contrastive pairs (same label -> cosine 1, different ->
  0) tune the encoder, then a logistic regression is fit on its embeddings.

Speed (``bench/encoder_finetune.py`` measures it against sentence-transformers' own
trainer on the same data, model and epochs):

* the sequence length comes from the data: the 99th percentile of the tokenized train
  lengths, capped by the encoder's ``max_seq_length`` (which prediction uses too), so
  short inputs never pay for 128 or 256 positions; the inputs cut are counted in
  ``info["truncated_inputs"]``;
* batches group examples of similar length (transformers' ``get_length_grouped_indices``:
  random mega-batches of up to 50 batches, sorted by length) and each is padded only
  to its own longest input;
* the step runs under the encoder's precision: bf16 autocast only where the hardware
  computes bf16 natively (``precision: auto``, see ``backends/sentence_transformers.py``);
* progress counts validation in the work (an ETA that does not jump at each epoch's
  validation) and says the epoch and the validation accuracy.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.backends.sentence_transformers import position_limit
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
    ``best_epoch``, ``best_val_accuracy``, ``epochs_run``, ``stopped_early``,
    ``steps_per_epoch``, ``max_seq_length`` (tokens per input in training),
    ``truncated_inputs`` (train inputs longer than that, cut at the end),
    ``longest_input`` (tokens) and ``precision`` (``bf16`` or ``fp32``), and
    ``resumed_from_epoch`` or ``checkpoint_discarded`` when a checkpoint was found.
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

    ``x_train``/``y_train`` and ``x_val``/``y_val`` are parallel lists (texts, label
    ids); an empty val split trains every epoch and keeps the last. ``workdir``
    holds the resume checkpoints (``last.pt``, ``best.pt``): a run killed after an
    epoch continues from there when called again with the same arguments.
    ``backend``'s own model is never changed.
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
    cap = min(backend.options.max_seq_length, position_limit(model))
    lengths = token_lengths(model, x_train)
    max_length = choose_max_length(lengths, cap)
    run.lengths = {t: min(n, max_length) for t, n in zip(x_train, lengths, strict=True)}
    run.info.update(
        max_seq_length=max_length,
        truncated_inputs=sum(n > max_length for n in lengths),
        longest_input=max(lengths, default=0),
        precision="bf16" if backend.use_bf16 else "fp32",
    )
    model.max_seq_length = max_length
    model.train()
    try:
        if options.method == "head":
            run.fit_head(model, x_train, y_train, x_val, y_val, n_labels, frozen_embed)
        else:
            run.fit_setfit(model, x_train, y_train, x_val, y_val)
    finally:
        # Prediction applies the encoder's own limit; the saved model carries that one.
        model.max_seq_length = backend.options.max_seq_length
    model.eval()
    return EncoderTrainResult(model, run.head, run.logreg, run.curves, run.info)


@dataclass
class EncoderStepProbe:
    """A few real steps of :func:`train_encoder`, timed, and the epoch they sample.

    ``seconds``: wall seconds of each timed step; ``padded_tokens``: the tokens each
    of those batches computed (its size x its longest input, after the cut);
    ``epoch_padded_tokens``: the same summed over one epoch's batches;
    ``steps_per_epoch``; ``val_units``: one validation's work in steps (as the
    trainer's own progress counts it); ``load_seconds``: copying the model.
    """

    seconds: list[float]
    padded_tokens: list[int]
    epoch_padded_tokens: int
    steps_per_epoch: int
    val_units: int
    load_seconds: float

    @property
    def epoch_seconds(self) -> float:
        """One epoch's training steps, scaled from the timed steps by padded tokens."""
        return sum(self.seconds) / max(1, sum(self.padded_tokens)) * self.epoch_padded_tokens

    @property
    def validation_seconds(self) -> float:
        """One validation pass (after each epoch)."""
        return self.val_units * sum(self.seconds) / max(1, len(self.seconds))


def probe_encoder_steps(
    backend: SentenceTransformerBackend,
    options: EncoderTrainOptions,
    x_train: list[str],
    y_train: list[int],
    x_val: list[str],
    *,
    n_labels: int,
    seed: int,
    steps: int = 3,
) -> EncoderStepProbe:
    """Time ``steps`` training steps of :func:`train_encoder` on this machine.

    A copy of the model, the same sequence length (from the data), length-grouped
    batches, precision, loss and fused AdamW as a fit; the steps are batches at the
    25th, 50th and 75th percentile of one epoch's padded tokens (after a warm-up
    step on the smallest), each run twice and the faster kept, so an epoch scales by
    padded tokens. Nothing is written;
    ``backend``'s model is not changed. Raises ValueError on an empty train split.
    """
    import tempfile

    import torch

    if not x_train:
        raise ValueError("the probe needs training texts")
    t0 = time.perf_counter()
    model = backend.clone_model()
    load = time.perf_counter() - t0
    cap = min(backend.options.max_seq_length, position_limit(model))
    lengths = token_lengths(model, x_train)
    max_length = choose_max_length(lengths, cap)
    model.max_seq_length = max_length
    model.train()
    with tempfile.TemporaryDirectory(prefix="adaptlab-probe-") as tmp:
        run = _Run(backend, options, seed, Path(tmp), ProgressSink())
        run.lengths = {t: min(n, max_length) for t, n in zip(x_train, lengths, strict=True)}
        heads: list[torch.nn.Module] = []
        if options.method == "head":
            dim = (
                getattr(model, "get_embedding_dimension", None)
                or model.get_sentence_embedding_dimension
            )
            dim = dim()
            heads = [torch.nn.Linear(dim, n_labels)]
            step_fn, item_lengths = run._head_step(model, heads[0], x_train, y_train)
            val_units = run._val_units(len(x_val))
        else:
            step_fn, item_lengths = run._pair_step(model, x_train, y_train)
            val_units = run._val_units(len(x_train) + len(x_val)) if x_val else 0
        batches = run._batches(item_lengths, torch.Generator().manual_seed(seed))
        padded = [len(b) * max(item_lengths[i] for i in b) for b in batches]
        order = sorted(range(len(batches)), key=padded.__getitem__)
        picks = sorted({order[round(q * (len(order) - 1))] for q in (0.25, 0.5, 0.75)})
        params = [p for m in (model, *heads) for p in m.parameters()]
        optimizer = torch.optim.AdamW(params, lr=options.learning_rate, fused=True)
        run._step(model, step_fn, batches[order[0]], optimizer)  # warm-up, not timed
        seconds = []
        for i in picks[:steps]:
            # Each batch twice, the faster kept: a shape's first step also builds its
            # kernels (bf16 on a CPU: oneDNN primitives), which a run pays once per
            # shape, not per step.
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                run._step(model, step_fn, batches[i], optimizer)
                times.append(time.perf_counter() - t0)
            seconds.append(min(times))
    return EncoderStepProbe(
        seconds=seconds,
        padded_tokens=[padded[i] for i in picks[:steps]],
        epoch_padded_tokens=sum(padded),
        steps_per_epoch=len(batches),
        val_units=val_units,
        load_seconds=load,
    )


#: Share of train inputs that fit the chosen sequence length whole (the rest are cut).
LENGTH_QUANTILE = 0.99


def token_lengths(model: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text with the model's special tokens, before any truncation."""
    if not texts:
        return []
    ids = model.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    return [len(x) for x in ids]


def choose_max_length(lengths: Sequence[int], cap: int, quantile: float = LENGTH_QUANTILE) -> int:
    """The training sequence length: the ``quantile`` of ``lengths`` (tokens), at most ``cap``.

    The longest 1 % of inputs are cut rather than making every long-input batch pay
    for one outlier; with length-grouped batches only those batches would. An empty
    list gives ``cap``. Raises ValueError for a cap below 2 (CLS and SEP alone).
    """
    if cap < 2:
        raise ValueError(f"max_seq_length {cap} is below 2 tokens")
    if not lengths:
        return cap
    ordered = sorted(lengths)
    at = min(len(ordered) - 1, max(0, -(-int(quantile * 1000) * len(ordered) // 1000) - 1))
    return max(2, min(cap, ordered[at]))


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
        self.lengths: dict[str, int] = {}  # text -> tokens in training (after the cut)

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

    def _batches(self, lengths: Sequence[int], generator: torch.Generator) -> list[list[int]]:
        """Batches of item indices, each of inputs of similar length (tokens)."""
        from transformers.trainer_pt_utils import get_length_grouped_indices

        bs = self.opts.batch_size
        order: list[int] = get_length_grouped_indices(  # type: ignore[no-untyped-call]
            list(lengths), bs, generator=generator
        )
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    @staticmethod
    def _by_length(texts: Sequence[str]) -> list[int]:
        """Indices of ``texts``, longest (in characters) first: forward passes over
        neighbours in this order pad the least."""
        return sorted(range(len(texts)), key=lambda i: -len(texts[i]))

    def _val_units(self, n_forward: int) -> int:
        """Validation's work in training steps: a forward pass is about a third of a
        step's forward, backward and update (backward costs about twice the forward)."""
        return -(-n_forward // (3 * self.opts.batch_size)) if n_forward else 0

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

        step_fn, lengths = self._head_step(model, head, x_train, y_train)
        val_units = self._val_units(len(x_val))
        self._train_loop(model, [head], lengths, step_fn, val_fn, val_units, bool(x_val))

    def _head_step(
        self, model: Any, head: torch.nn.Module, x_train: list[str], y_train: list[int]
    ) -> tuple[Callable[[list[int]], torch.Tensor], list[int]]:
        """Method ``head``: the loss of a batch of train indices (cross-entropy of the
        head over the encoder's embeddings), and each item's tokens."""
        import torch

        loss_fn = torch.nn.CrossEntropyLoss()
        labels_t = torch.tensor(y_train)

        def step_fn(batch: list[int]) -> torch.Tensor:
            logits = head(self._encode(model, [x_train[i] for i in batch]))
            loss: torch.Tensor = loss_fn(logits.float(), labels_t[batch])
            return loss

        return step_fn, [self.lengths[t] for t in x_train]

    def fit_setfit(
        self,
        model: Any,
        x_train: list[str],
        y_train: list[int],
        x_val: list[str],
        y_val: list[int],
    ) -> None:
        def val_fn() -> tuple[float, float]:
            self._fit_logreg(model, x_train, y_train)
            return self._evaluate_logreg(model, x_val, y_val)

        step_fn, lengths = self._pair_step(model, x_train, y_train)
        # Validation re-embeds the train split to refit the logistic regression.
        val_units = self._val_units(len(x_train) + len(x_val)) if x_val else 0
        self._train_loop(model, [], lengths, step_fn, val_fn, val_units, bool(x_val))
        self._fit_logreg(model, x_train, y_train)

    def _pair_step(
        self, model: Any, x_train: list[str], y_train: list[int]
    ) -> tuple[Callable[[list[int]], torch.Tensor], list[int]]:
        """Method ``setfit``: the loss of a batch of contrastive pairs (cosine vs 1 or 0,
        mean squared error), and each pair's tokens (its longer text's)."""
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

        lengths = [max(self.lengths[a], self.lengths[b]) for a, b in zip(left, right, strict=True)]
        return step_fn, lengths

    # ---------------------------------------------------------------- loop

    def _train_loop(
        self,
        model: Any,
        heads: list[torch.nn.Module],
        lengths: list[int],
        step_fn: Any,
        val_fn: Any,
        val_units: int,
        early_stopping: bool = True,
    ) -> None:
        """Train ``len(lengths)`` items (``lengths[i]``: tokens of item ``i``) for the
        options' epochs, validating after each, until ``patience`` epochs bring no
        better val accuracy. ``val_units``: one validation's work in training steps."""
        import torch

        opts = self.opts
        params = [
            {"params": list(model.parameters()), "lr": opts.learning_rate},
            *({"params": list(h.parameters()), "lr": opts.head_learning_rate} for h in heads),
        ]
        n_items = len(lengths)
        steps_per_epoch = -(-n_items // opts.batch_size)
        total = steps_per_epoch * opts.epochs
        warmup = int(total * opts.warmup_ratio)

        def schedule(s: int) -> float:
            if s < warmup:
                return (s + 1) / max(1, warmup)
            return max(0.0, (total - s) / max(1, total - warmup))

        def fresh() -> tuple[Any, Any, torch.Generator, dict[str, Any]]:
            # The fused kernel (CPU and CUDA since torch 2.4, transformers' default optimizer)
            # measured 3.4x faster per step than the per-tensor loop on this model's 22.7M
            # weights (0.10 vs 0.34 s, 1 thread on the loaded 2 cores); same update rule.
            optimizer = torch.optim.AdamW(params, weight_decay=opts.weight_decay, fused=True)
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
        # The bar counts training steps and validation (in step equivalents), so its
        # rate, and the time left, do not fall at each epoch's validation.
        work = (steps_per_epoch + val_units) * opts.epochs
        with self.progress.task(f"fine-tuning ({opts.method})", work) as advance:
            advance((steps_per_epoch + val_units) * state["epoch"])
            while state["epoch"] < opts.epochs and state["bad_epochs"] < opts.patience:
                epoch = state["epoch"]
                best = state["best"] if early_stopping else -1.0
                self.progress.status(self._status(epoch + 1, best))
                model.train()
                window: list[float] = []
                every = max(1, steps_per_epoch // 4)  # four train-loss points per epoch
                for i, batch in enumerate(self._batches(lengths, generator), start=1):
                    loss = self._step(model, step_fn, batch, optimizer)
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
                advance(val_units)
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
                if early_stopping:
                    self.progress.status(self._status(epoch + 1, state["best"], val_acc))
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

    def _step(self, model: Any, step_fn: Any, batch: list[int], optimizer: Any) -> Any:
        """One optimizer step on ``batch``: forward (under the encoder's precision),
        backward, gradient clipping at norm 1, update; returns the loss."""
        import torch

        with self.backend.autocast():
            loss = step_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    def _status(self, epoch: int, best: float, val_acc: float | None = None) -> str:
        """``epoch 3/8, val acc 0.912 (best 0.915)``: where training stands."""
        text = f"epoch {epoch}/{self.opts.epochs}"
        if val_acc is not None:
            text += f", val acc {val_acc:.3f}"
        if best >= 0 and best != val_acc:
            text += f" (best {best:.3f})" if val_acc is not None else f", best val acc {best:.3f}"
        return text

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
                # Written as they stand: a deep copy first (as the kept best needs) cost
                # about as much as the write itself.
                "model": model.state_dict(),
                "heads": [h.state_dict() for h in heads],
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
        order = self._by_length(texts)
        ordered = [texts[i] for i in order]
        with torch.no_grad(), self.backend.autocast():
            logits = torch.cat(
                [
                    head(self._encode(model, ordered[i : i + 64])).float()
                    for i in range(0, len(texts), 64)
                ]
            )
        target = torch.tensor([y[i] for i in order])
        loss = float(torch.nn.functional.cross_entropy(logits, target))
        acc = float((logits.argmax(dim=1) == target).float().mean())
        return loss, acc

    def _embed_with(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        # The backend applies the encoder's own length; training goes on at the chosen one.
        length = model.max_seq_length
        try:
            return self.backend.with_model(model).embed(texts)
        finally:
            model.max_seq_length = length

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
