"""Checks on a labelled dataset, with the thresholds the decision engine relies on.

Thresholds come from the product brief: fine-tuning wants at least 100–200 good
examples, 1,000–10,000 is the sweet spot, and classes should be balanced.

Label checks (unknown labels, examples per class, balance) apply to classification
only; duplicates, conflicts (the same input with different targets) and data size
apply to every task.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.core.errors import DataError, Issue
from adaptlab.data.json_fields import field_group, flatten_fields
from adaptlab.data.load import Example, Task

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
    label_counts: dict[str, int]  # classification only; empty for the other tasks
    issues: list[Issue] = field(default_factory=list)
    duplicate_groups: int = 0
    mean_words: float = 0.0
    task: str = "classification"
    # extraction: examples whose target has a value at each field (list indices as [])
    field_counts: dict[str, int] = field(default_factory=dict)
    mean_target_words: float = 0.0  # generation: words per reference answer

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


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _target_key(label: str, task: str) -> str:
    """What makes two targets the same: labels and JSON exactly, references as normalised."""
    return normalise(label) if task == "generation" else label


def check_examples(
    examples: Sequence[Example],
    labels: Sequence[str],
    *,
    test: Sequence[Example] = (),
    conflicts: str = "error",
    task: Task = "classification",
) -> DataReport:
    """Validate ``examples`` (and an optional user-provided ``test`` set) against ``labels``."""
    known = set(labels)
    issues: list[Issue] = []
    classification = task == "classification"
    for ex in [*examples, *test] if classification else ():
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
        targets = {_target_key(m.label, task): m.label for m in members}
        found = (
            sorted(targets.values()) if classification else sorted(map(_short, targets.values()))
        )
        if len(found) > 1:
            what = "labels" if classification else "targets"
            refuse = conflicts == "error"
            issues.append(
                Issue(
                    f"the same input has conflicting {what} {found} on lines {_lines(members)}",
                    file=first.file,
                    line=first.line,
                    fix=f"decide on one {what[:-1]} for this input and correct the others"
                    + (" (or set data.conflicts: warn to keep both)." if refuse else "."),
                    # data.conflicts says "warn"; an Issue's severity is "warning"
                    severity="error" if refuse else "warning",
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
                    fix="delete the extra copies if they are not intended.",
                    severity="warning",
                    code="duplicate",
                )
            )

    path = examples[0].file if examples else None
    if classification:
        issues.extend(_label_issues(examples, labels, path, bool(test)))
    n = len(examples)
    if n < MIN_FINETUNE_EXAMPLES:
        issues.append(
            Issue(
                f"{n} examples: below the {MIN_FINETUNE_EXAMPLES}–{MIN_FINETUNE_EXAMPLES_GOOD} "
                "fine-tuning needs; expect prompting to win",
                file=path,
                fix=f"collect at least {MIN_FINETUNE_EXAMPLES} examples before you trust a "
                "fine-tune's figures.",
                severity="warning",
                code="small-data",
            )
        )
    mean_words = sum(len(e.text.split()) for e in examples) / n if n else 0.0
    counts = Counter(ex.label for ex in examples) if classification else Counter[str]()
    report = DataReport(
        n_examples=n,
        label_counts={label: counts.get(label, 0) for label in labels} if classification else {},
        issues=issues,
        duplicate_groups=dup_groups,
        mean_words=mean_words,
        task=task,
    )
    if task == "extraction":
        report.field_counts = _field_counts(examples)
    elif task == "generation" and n:
        report.mean_target_words = sum(len(e.label.split()) for e in examples) / n
    return report


def _field_counts(examples: Sequence[Example]) -> dict[str, int]:
    """Per field (list indices as ``[]``): how many targets give it a value."""
    import json

    counts: Counter[str] = Counter()
    for ex in examples:
        flat = flatten_fields(json.loads(ex.label))
        counts.update({field_group(path) for path, value in flat.items() if _has_value(value)})
    return dict(sorted(counts.items()))


def _has_value(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and value != []


def _label_issues(
    examples: Sequence[Example], labels: Sequence[str], path: str | None, own_test: bool
) -> list[Issue]:
    """Examples per class and class balance (classification only)."""
    known = set(labels)
    issues: list[Issue] = []
    counts = Counter(ex.label for ex in examples)
    first_line = {}
    for ex in reversed(examples):
        first_line[ex.label] = ex.line
    for label in labels:
        n = counts.get(label, 0)
        if n < MIN_PER_CLASS and not own_test:
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
                    fix=f"add examples of '{label}' until it has at least {FEW_PER_CLASS}.",
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
                fix="collect more examples of the rare classes, and read macro-F1, the fairer "
                "score here.",
                severity="warning",
                code="imbalance",
            )
        )
    return issues


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
