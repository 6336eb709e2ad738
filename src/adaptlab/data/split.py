"""A deterministic train/val/test split with no leakage.

Classification splits are stratified by label; extraction and generation targets
have no classes, so their split is seeded random. Either way inputs that are equal
after normalising are one group and always land in the same split, so a duplicate
can never sit in train and test at once.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adaptlab.core.files import write_text_atomically
from adaptlab.data.load import Example
from adaptlab.data.validate import assert_no_leakage, find_leakage, normalise

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    fingerprint: str
    leaked: int = 0  # test inputs also in train, kept on request (data.leakage: warn)

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def fingerprint(examples: Sequence[Example], *, extra: dict[str, object]) -> str:
    """Hash of every (text, label) in order plus the split parameters."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for ex in examples:
        h.update(b"\x00" + ex.text.encode() + b"\x01" + ex.label.encode())
    return h.hexdigest()[:16]


def _take(n: int, share: float, keep: int) -> int:
    """How many of ``n`` groups go to the held-out side, leaving ``keep`` behind."""
    if n <= keep:
        return 0
    return min(max(1, round(n * share)), n - keep)


def _deal(
    groups: list[list[Example]],
    rng: random.Random,
    out: dict[str, list[Example]],
    *,
    test_size: float,
    val_size: float,
    own_test: bool,
) -> None:
    """Shuffle ``groups`` and deal them to test, val and train."""
    rng.shuffle(groups)
    n_test = 0 if own_test else _take(len(groups), test_size, keep=1)
    rest = groups[n_test:]
    n_val = _take(len(rest), val_size, keep=2) if val_size > 0 else 0
    for name, chunk in (("test", groups[:n_test]), ("val", rest[:n_val]), ("train", rest[n_val:])):
        out[name].extend(ex for group in chunk for ex in group)


def stratified_split(
    examples: Sequence[Example],
    *,
    test_size: float,
    val_size: float,
    seed: int,
    test: Sequence[Example] | None = None,
    allow_leakage: bool = False,
) -> Split:
    """Split by label, group-aware, seeded. With ``test`` given, only val is carved out."""
    rng = random.Random(seed)
    by_label: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for ex in examples:
        by_label[ex.label][normalise(ex.text)].append(ex)

    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        groups = [by_label[label][k] for k in sorted(by_label[label])]
        _deal(groups, rng, out, test_size=test_size, val_size=val_size, own_test=test is not None)
    params = {"test_size": test_size, "val_size": val_size, "seed": seed}
    return _finish(examples, out, test, params, allow_leakage)


def random_split(
    examples: Sequence[Example],
    *,
    test_size: float,
    val_size: float,
    seed: int,
    test: Sequence[Example] | None = None,
    allow_leakage: bool = False,
) -> Split:
    """Split groups of equal inputs at random, seeded: for targets that have no classes."""
    by_text: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_text[normalise(ex.text)].append(ex)
    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    groups = [by_text[k] for k in sorted(by_text)]
    rng = random.Random(seed)
    _deal(groups, rng, out, test_size=test_size, val_size=val_size, own_test=test is not None)
    # "method" keeps a random split's fingerprint apart from a stratified one's
    params = {"test_size": test_size, "val_size": val_size, "seed": seed, "method": "random"}
    return _finish(examples, out, test, params, allow_leakage)


def split_examples(
    examples: Sequence[Example],
    *,
    task: str,
    test_size: float,
    val_size: float,
    seed: int,
    test: Sequence[Example] | None = None,
    allow_leakage: bool = False,
) -> Split:
    """The split a task gets: stratified for classification, seeded random otherwise."""
    fn = stratified_split if task == "classification" else random_split
    return fn(
        examples,
        test_size=test_size,
        val_size=val_size,
        seed=seed,
        test=test,
        allow_leakage=allow_leakage,
    )


def _finish(
    examples: Sequence[Example],
    out: dict[str, list[Example]],
    test: Sequence[Example] | None,
    params: Mapping[str, object],
    allow_leakage: bool,
) -> Split:
    """Put the user's own test set in, sort, check for leakage and fingerprint."""
    if test is not None:
        out["test"] = list(test)
    # file order, not label order, so a reader of the split files sees the source order
    for name in SPLITS:
        out[name].sort(key=lambda e: (e.file, e.line))
    leaked = 0
    if test is not None and allow_leakage:
        leaked = len(find_leakage(out["train"] + out["val"], out["test"]))
    else:
        assert_no_leakage(out["train"] + out["val"], out["test"])
    fp = fingerprint([*examples, *(test or [])], extra={**params, "own_test": bool(test)})
    return Split(out["train"], out["val"], out["test"], fp, leaked)


def save_split(split: Split, folder: Path) -> None:
    """Write ``train/val/test.jsonl`` and ``manifest.json``; atomically per file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        rows = getattr(split, name)
        _atomic_write(
            folder / f"{name}.jsonl", "".join(json.dumps(e.to_json()) + "\n" for e in rows)
        )
    manifest = {"fingerprint": split.fingerprint, "counts": split.counts()}
    _atomic_write(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    # the one writer: whole or not at all, through a link to its target
    write_text_atomically(path, text, newline="\n", what="the split file")
