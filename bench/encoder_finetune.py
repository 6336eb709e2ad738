"""adaptlab's encoder fine-tune against sentence-transformers' own trainer, in one run.

Both train the same copy of the bundled all-MiniLM-L6-v2 with the same objective
(a softmax head started at the class centroids, cross-entropy), the same optimiser
groups (AdamW, encoder lr 5e-5, head lr 2e-3, weight decay 0.01, 10 % linear
warm-up then linear decay), batch size, epochs, precision (bf16 autocast where the
CPU has native bf16, else fp32) and the same train rows:

* adaptlab: the ``finetune`` strategy (``method: head``), with what it does beyond
  the baseline: a validation pass and a resume checkpoint after every epoch, and
  early stopping (patience 2) that may end it before the last epoch;
* baseline: ``SentenceTransformerTrainer`` with a loss module holding the same head,
  random batches padded per batch (its defaults), no evaluation, no checkpoints.

Prints each wall time (``--repeats`` rounds, alternating which goes first; the
fastest of each counts), test accuracy with its 95 % bootstrap interval, and the
ratios. Goal (issue 22): adaptlab at least as fast, accuracy within 1 point.

    python bench/encoder_finetune.py --threads 1 --also-fp32   # german_intents, ~12 min
    python bench/encoder_finetune.py --data banking77 --per-class 10
    python bench/encoder_finetune.py --also-fp32   # adds adaptlab in fp32: bf16's gain

Data: ../shared/data/<name>/{train,test}.csv (see its README); per class
``--per-class`` train rows and ``--val-per-class`` validation rows (adaptlab's
early stopping), drawn with ``--seed``; ``--test`` test rows drawn at random.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(data: str, per_class: int, val_per_class: int, test_n: int, seed: int) -> Any:
    """(train, val, test) lists of (text, label) and the sorted label names."""
    folder = SHARED / data
    if not folder.is_dir():
        folder = Path("/work/shared/data") / data
    label_col = "label" if data == "german_intents" else "category"
    rows = [(r["text"], r[label_col]) for r in csv.DictReader((folder / "train.csv").open())]
    test = [(r["text"], r[label_col]) for r in csv.DictReader((folder / "test.csv").open())]
    rng = random.Random(seed)
    rng.shuffle(rows)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    train = [r for v in by_label.values() for r in v[:per_class]]
    val = [r for v in by_label.values() for r in v[per_class : per_class + val_per_class]]
    rng.shuffle(test)
    return train, val, test[:test_n], sorted(by_label)


def accuracy_ci(gold: Sequence[int], pred: Sequence[int], n_labels: int) -> Any:
    import numpy as np

    from adaptlab.evaluation.stats import bootstrap_ci

    return bootstrap_ci(np.array(gold), np.array(pred), n_labels, resamples=1000)


def centroid_head(backend: Any, texts: list[str], y: list[int], n_labels: int) -> Any:
    """The head adaptlab starts from: class centroids of the frozen embeddings x 20."""
    import numpy as np
    import torch

    frozen = backend.embed(texts)
    cent = np.stack([frozen[np.array(y) == c].mean(axis=0) for c in range(n_labels)])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
    head = torch.nn.Linear(cent.shape[1], n_labels)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(cent).float() * 20.0)
        head.bias.zero_()
    return head


def run_adaptlab(backend: Any, args: Any, train: Any, val: Any, labels: list[str]) -> Any:
    from adaptlab.data import Example
    from adaptlab.strategies import StrategyContext, get_strategy

    cls = get_strategy("finetune")
    opts = cls.Options.model_validate(
        {"method": "head", "epochs": args.epochs, "batch_size": args.batch_size},
    )
    opts = opts.model_copy(update={"save_model": False})
    with tempfile.TemporaryDirectory() as tmp:
        ctx = StrategyContext(
            backend=backend, labels={n: n for n in labels}, seed=args.seed, workdir=Path(tmp)
        )
        strategy = cls(opts, ctx)
        t0 = time.perf_counter()
        strategy.fit(
            [Example(t, lab, "train.csv", i + 1) for i, (t, lab) in enumerate(train)],
            [Example(t, lab, "train.csv", i + 1) for i, (t, lab) in enumerate(val)],
        )
        seconds = time.perf_counter() - t0

    def predict(texts: list[str]) -> list[int]:
        return [labels.index(str(p.label)) for p in strategy.predict(texts)]

    return seconds, predict, strategy.info


def run_st_trainer(backend: Any, args: Any, train: Any, labels: list[str]) -> Any:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    texts = [t for t, _ in train]
    y = [labels.index(lab) for _, lab in train]
    t0 = time.perf_counter()  # the head's start, as in adaptlab, is part of the fit
    model = backend.clone_model()
    model.max_seq_length = backend.options.max_seq_length
    head = centroid_head(backend, texts, y, len(labels))

    class HeadLoss(torch.nn.Module):
        """Cross-entropy of a linear head over the sentence embedding (one text column)."""

        def __init__(self, model: Any, head: torch.nn.Module) -> None:
            super().__init__()
            self.model, self.head = model, head

        def forward(self, features: Any, labels: torch.Tensor) -> torch.Tensor:
            emb = self.model(features[0])["sentence_embedding"]
            return torch.nn.functional.cross_entropy(self.head(emb).float(), labels)

    steps: int = -(-len(texts) // args.batch_size) * args.epochs
    warmup: int = int(steps * 0.1)
    optimizer = torch.optim.AdamW(
        [
            {"params": list(model.parameters()), "lr": 5e-5},
            {"params": list(head.parameters()), "lr": 2e-3},
        ],
        weight_decay=0.01,
        fused=True,  # transformers' default optimizer (adamw_torch_fused) with torch >= 2.8
    )

    def schedule(s: int) -> float:
        if s < warmup:
            return (s + 1) / max(1, warmup)
        return max(0.0, (steps - s) / max(1, steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    with tempfile.TemporaryDirectory() as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            bf16=bool(backend.use_bf16),
            use_cpu=True,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_strategy="no",
            seed=args.seed,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=targs,
            train_dataset=Dataset.from_dict({"text": texts, "label": y}),
            loss=HeadLoss(model, head),
            optimizers=(optimizer, scheduler),
        )
        trainer.train()
        seconds = time.perf_counter() - t0
    model.eval()
    tuned = backend.with_model(model)

    def predict(batch: list[str]) -> list[int]:
        with torch.no_grad():
            x = torch.from_numpy(tuned.embed(batch))
            return head(x).argmax(dim=1).tolist()  # type: ignore[no-any-return]

    return seconds, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=["german_intents", "banking77"], default="german_intents")
    ap.add_argument("--per-class", type=int, default=16, help="train rows per label")
    ap.add_argument("--val-per-class", type=int, default=4, help="val rows per label")
    ap.add_argument("--test", type=int, default=800, help="test rows (random)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="rounds, alternating which goes first; each one's fastest wall time counts",
    )
    ap.add_argument(
        "--also-fp32",
        action="store_true",
        help="also run adaptlab in fp32 (bf16 autocast against fp32, same run)",
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads for both (0: torch's default)"
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )

    train, val, test, labels = load(
        args.data, args.per_class, args.val_per_class, args.test, args.seed
    )
    backend = SentenceTransformerBackend(SentenceTransformerOptions())
    backend.embed([t for t, _ in train[:64]])  # warm-up: kernels, allocator
    print(
        f"data {args.data}: {len(train)} train, {len(val)} val, {len(test)} test rows, "
        f"{len(labels)} labels; epochs {args.epochs}, batch {args.batch_size}, "
        f"precision {'bf16' if backend.use_bf16 else 'fp32'}, torch threads "
        f"{torch.get_num_threads()}",
        flush=True,
    )
    gold = [labels.index(lab) for _, lab in test]
    texts = [t for t, _ in test]
    results: dict[str, tuple[float, Any]] = {}
    systems = ["st", "adaptlab"] + (["adaptlab-fp32"] if args.also_fp32 else [])
    # Alternate who goes first: on a shared machine the load drifts between runs.
    order = [w for r in range(args.repeats) for w in (systems if r % 2 == 0 else systems[::-1])]
    info: dict[str, Any] = {}
    for who in order:
        torch.manual_seed(args.seed)
        if who == "st":
            seconds, predict = run_st_trainer(backend, args, train, labels)
        elif who == "adaptlab":
            seconds, predict, info = run_adaptlab(backend, args, train, val, labels)
        else:
            fp32 = SentenceTransformerBackend(
                SentenceTransformerOptions(precision="fp32"), model=backend.model
            )
            seconds, predict, _ = run_adaptlab(fp32, args, train, val, labels)
        ci = accuracy_ci(gold, predict(texts), len(labels))
        if who in results:  # a repeat: the fastest time; same seeds, so the same accuracy
            seconds = min(seconds, results[who][0])
        results[who] = (seconds, ci)
        print(
            f"{who:13s} fit {seconds:7.1f} s   test accuracy {100 * ci.estimate:5.1f}% "
            f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}]",
            flush=True,
        )
    keys = ("epochs_run", "stopped_early", "max_seq_length", "truncated_inputs", "precision")
    print("adaptlab info: " + ", ".join(f"{k}={info.get(k)}" for k in keys))
    (ta, ca), (ts, cs) = results["adaptlab"], results["st"]
    print(f"fastest of {args.repeats}: adaptlab {ta:.1f} s, ST trainer {ts:.1f} s")
    print(
        f"ST trainer time / adaptlab time = {ts / ta:.2f} (goal >= 1.00); "
        f"accuracy adaptlab - ST = {100 * (ca.estimate - cs.estimate):+.1f} points "
        f"(goal >= -1.0)"
    )
    if "adaptlab-fp32" in results:
        (tf, cf) = results["adaptlab-fp32"]
        print(
            f"adaptlab fp32 time / {info.get('precision')} time = {tf / ta:.2f}; accuracy "
            f"{info.get('precision')} - fp32 = {100 * (ca.estimate - cf.estimate):+.1f} points"
        )


if __name__ == "__main__":
    main()
