"""Checks on a labelled dataset, with the thresholds the decision engine relies on.

Thresholds come from the product brief: fine-tuning wants at least 100–200 good
examples, 1,000–10,000 is the sweet spot, and classes should be balanced.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.data.load import Example
from adaptlab.errors import DataError, Issue

MIN_FINETUNE_EXAMPLES = 100
MIN_FINETUNE_EXAMPLES_GOOD = 200
SWEET_SPOT = (1_000, 10_000)
MIN_PER_CLASS = 2  # one for train, one for test: below that no stratified split exists
FEW_PER_CLASS = 10  # below this a per-class score is noise
IMBALANCE_RATIO = 3.0

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Text as a duplicate check sees it: NFKC, case-folded, no punctuation, one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


@dataclass
class DataReport:
    """What ``adaptlab data check`` prints: statistics plus errors and warnings."""

    n_examples: int
    label_counts: dict[str, int]
    issues: list[Issue] = field(default_factory=list)
    duplicate_groups: int = 0
    mean_words: float = 0.0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def raise_on_errors(self) -> None:
        if self.errors:
            raise DataError(f"{len(self.errors)} data error(s)", issues=self.errors)


def _lines(examples: Sequence[Example]) -> str:
    shown = ", ".join(str(e.line) for e in examples[:8])
    return shown + (" …" if len(examples) > 8 else "")


def check_examples(
    examples: Sequence[Example],
    labels: Sequence[str],
    *,
    test: Sequence[Example] = (),
    conflicts: str = "error",
) -> DataReport:
    """Validate ``examples`` (and an optional user-provided ``test`` set) against ``labels``."""
    known = set(labels)
    issues: list[Issue] = []
    for ex in [*examples, *test]:
        if ex.label not in known:
            issues.append(
                Issue(
                    f"unknown label '{ex.label}' (known: {', '.join(labels)})",
                    file=ex.file,
                    line=ex.line,
                    fix="correct the label, or add it with a description under 'labels:' "
                    "in adaptlab.yaml",
                    code="unknown-label",
                )
            )

    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[normalise(ex.text)].append(ex)
    dup_groups = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        dup_groups += 1
        first = members[0]
        found = sorted({m.label for m in members})
        if len(found) > 1:
            issues.append(
                Issue(
                    f"the same input has conflicting labels {found} on lines {_lines(members)}",
                    file=first.file,
                    line=first.line,
                    fix="decide on one label for this input and correct the others "
                    "(or set data.conflicts: warn to keep both)",
                    severity=conflicts,
                    code="conflicting-duplicate",
                )
            )
        else:
            exact = len({m.text for m in members}) == 1
            kind = "exact" if exact else "near (same after normalising case/punctuation)"
            issues.append(
                Issue(
                    f"{kind} duplicate on lines {_lines(members)}; kept, and always placed "
                    "in the same split so it cannot leak into the test set",
                    file=first.file,
                    line=first.line,
                    fix="delete the extra copies if they are not intended",
                    severity="warning",
                    code="duplicate",
                )
            )

    counts = Counter(ex.label for ex in examples)
    first_line = {}
    for ex in reversed(examples):
        first_line[ex.label] = ex.line
    path = examples[0].file if examples else None
    for label in labels:
        n = counts.get(label, 0)
        if n < MIN_PER_CLASS and not test:
            issues.append(
                Issue(
                    f"label '{label}' has {n} example(s); at least {MIN_PER_CLASS} are needed "
                    "to put one in train and one in test",
                    file=path,
                    line=first_line.get(label),
                    fix=f"add examples of '{label}', or remove it from 'labels:'",
                    code="too-few-per-class",
                )
            )
        elif n < FEW_PER_CLASS:
            issues.append(
                Issue(
                    f"label '{label}' has only {n} examples; its scores will be noisy",
                    file=path,
                    fix=f"aim for at least {FEW_PER_CLASS} per class",
                    severity="warning",
                    code="few-per-class",
                )
            )
    present = [counts[label] for label in labels if counts.get(label)]
    if present and max(present) > IMBALANCE_RATIO * min(present):
        big = max(counts, key=lambda k: counts[k])
        small = min((k for k in counts if k in known), key=lambda k: counts[k], default=big)
        issues.append(
            Issue(
                f"classes are imbalanced: '{big}' has {counts[big]} examples, '{small}' "
                f"{counts[small]} (ratio {counts[big] / max(counts[small], 1):.1f} > "
                f"{IMBALANCE_RATIO:g})",
                file=path,
                fix="collect more of the rare classes; macro-F1 is the fairer score here",
                severity="warning",
                code="imbalance",
            )
        )
    n = len(examples)
    if n < MIN_FINETUNE_EXAMPLES:
        issues.append(
            Issue(
                f"{n} examples: below the {MIN_FINETUNE_EXAMPLES}–{MIN_FINETUNE_EXAMPLES_GOOD} "
                "fine-tuning needs; expect prompting to win",
                file=path,
                severity="warning",
                code="small-data",
            )
        )
    mean_words = sum(len(e.text.split()) for e in examples) / n if n else 0.0
    return DataReport(
        n_examples=n,
        label_counts={label: counts.get(label, 0) for label in labels},
        issues=issues,
        duplicate_groups=dup_groups,
        mean_words=mean_words,
    )


def find_leakage(train: Sequence[Example], test: Sequence[Example]) -> list[Issue]:
    """One issue per test input (normalised) that also appears in train."""
    seen = {normalise(e.text): e for e in train}
    leaks: list[Issue] = [
        Issue(
            f"test input also appears in train ({Path(seen[normalise(t.text)].file).name}:"
            f"{seen[normalise(t.text)].line})",
            file=t.file,
            line=t.line,
            fix="remove it from one of the two files (or set data.leakage: warn)",
            code="leakage",
        )
        for t in test
        if normalise(t.text) in seen
    ]
    return leaks


def assert_no_leakage(train: Sequence[Example], test: Sequence[Example]) -> None:
    """Fail if any test input (normalised) also appears in train."""
    leaks = find_leakage(train, test)
    if leaks:
        raise DataError(f"{len(leaks)} test input(s) leak from train", issues=leaks)
