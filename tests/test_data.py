"""Loading, validation and the split: determinism, stratification, no leakage."""

from __future__ import annotations

from collections import Counter

from adaptlab.data import Example, check_examples, stratified_split
from adaptlab.data.validate import normalise


def _examples() -> list[Example]:
    out: list[Example] = []
    for label, n in (("a", 40), ("b", 30), ("c", 10)):
        out += [
            Example(f"{label} example number {i}", label, "d.jsonl", len(out) + 1 + i)
            for i in range(n)
        ]
    # a duplicate group: same text after normalising, must stay in one split
    out.append(Example("A example number 0!", "a", "d.jsonl", 999))
    return out


def test_split_is_deterministic_stratified_and_group_aware() -> None:
    ex = _examples()
    s1 = stratified_split(ex, test_size=0.2, val_size=0.1, seed=1)
    s2 = stratified_split(ex, test_size=0.2, val_size=0.1, seed=1)
    assert s1 == s2 and s1.fingerprint == s2.fingerprint
    s3 = stratified_split(ex, test_size=0.2, val_size=0.1, seed=2)
    assert s3.fingerprint != s1.fingerprint and s3.test != s1.test
    assert sum(s1.counts().values()) == len(ex)  # nothing dropped
    test_counts = Counter(e.label for e in s1.test)
    assert test_counts == {"a": 8, "b": 6, "c": 2}
    train_texts = {normalise(e.text) for e in s1.train + s1.val}
    assert not any(normalise(e.text) in train_texts for e in s1.test)
    where = {
        name: any(e.line == 999 for e in getattr(s1, name)) for name in ("train", "val", "test")
    }
    dup_split = next(k for k, v in where.items() if v)
    assert any(e.text == "a example number 0" for e in getattr(s1, dup_split))


def test_check_reports_duplicates_imbalance_and_small_data() -> None:
    report = check_examples(_examples(), ["a", "b", "c"])
    codes = Counter(i.code for i in report.issues)
    assert not report.errors
    assert codes["duplicate"] == 1
    assert codes["imbalance"] == 1  # 41 vs 10
    assert codes["small-data"] == 1  # 81 < 100
    dup = next(i for i in report.issues if i.code == "duplicate")
    assert dup.line == 1 and "999" in dup.message
