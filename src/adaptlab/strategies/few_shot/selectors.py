"""Which training examples a few-shot candidate sees."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adaptlab.data import Example


def stratified(train: Sequence[Example], k: int, seed: int) -> list[Example]:
    """k examples of every label (all of them where a label has fewer)."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in train:
        by_label[ex.label].append(ex)
    picked: list[Example] = []
    for label in sorted(by_label):
        pool = by_label[label]
        picked.extend(rng.sample(pool, min(k, len(pool))))
    return picked


def uniform(train: Sequence[Example], k: int, seed: int) -> list[Example]:
    """k x (number of labels) examples drawn from all, ignoring labels."""
    n_labels = len({ex.label for ex in train})
    return random.Random(seed).sample(list(train), min(k * n_labels, len(train)))


SELECTORS = {"stratified": stratified, "random": uniform}
