"""Learning curves: nested stratified subsets, the power-law fit, crossings, the store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptlab import Project, run_project
from adaptlab.core.progress import ProgressSink
from adaptlab.data import Example
from adaptlab.decide.curves import PowerLaw, crossing, fit_power_law
from adaptlab.engine.curves import nested_subsets, run_curves
from adaptlab.evaluation.learning import CurvePoint
from tests.conftest import run_cli, small_project


def _examples(counts: dict[str, int]) -> list[Example]:
    return [
        Example(text=f"{label} {i}", label=label, file=f"{label}.jsonl", line=i)
        for label, n in counts.items()
        for i in range(n)
    ]


def test_subsets_are_nested_stratified_and_seeded() -> None:
    train = _examples({"a": 60, "b": 30, "c": 10})
    subs = nested_subsets(train, [10, 50, 100, 200], draw=0, seed=1, stratified=True)
    assert sorted(subs) == [10, 50]  # 100 and 200 are the full split or more: left out
    assert [len(subs[n]) for n in (10, 50)] == [10, 50]
    assert {e.id for e in subs[10]} <= {e.id for e in subs[50]}
    labels = [e.label for e in subs[50]]
    assert (labels.count("a"), labels.count("b"), labels.count("c")) == (30, 15, 5)
    assert nested_subsets(train, [10], 0, 1, True) == {10: subs[10]}
    assert nested_subsets(train, [10], 1, 1, True)[10] != subs[10]  # another draw
    # every label keeps at least one example once the size allows it
    few = nested_subsets(_examples({"a": 97, "b": 3}), [4], 0, 0, True)[4]
    assert sorted(e.label for e in few) == ["a", "a", "a", "b"]


def test_the_power_law_fit_recovers_its_parameters_and_the_crossing() -> None:
    truth = PowerLaw(0.9, 2.0, 0.5)
    sizes = [25, 50, 100, 200, 400, 800]
    fit = fit_power_law(sizes, [float(truth(n)) for n in sizes])
    assert fit is not None
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.9, 2.0, 0.5), abs=1e-3)
    # 0.9 - 2 / sqrt(N) passes a flat 0.7 at N = (2 / 0.2)^2 = 100
    pts = [
        CurvePoint("ft", n, d, float(truth(n)) + e, "k")
        for n in sizes
        for d, e in enumerate((-0.01, 0.0, 0.01))
    ]
    x = crossing(pts, 0.7, resamples=50)
    assert x is not None and x.n is not None
    assert 90 <= x.n <= 110 and x.observed
    assert x.low is not None and x.high is not None and x.low <= x.n <= x.high
    # a flat rival above the plateau is never passed
    never = crossing(pts, 0.95, resamples=20)
    assert never is not None and never.n is None
    assert fit_power_law([10, 10, 20], [0.1, 0.2, 0.3]) is None  # two distinct sizes


@pytest.mark.slow
def test_curves_are_stored_and_never_trained_twice(tmp_path: Path, example_project: Path) -> None:
    cands: list[dict[str, Any]] = [
        {"name": "few-shot", "strategy": "few-shot", "params": {"k": 2}},
        {"name": "knn", "strategy": "rag", "params": {"top_k": 3}},
        {"name": "zero-shot", "strategy": "zero-shot"},
    ]
    root = small_project(tmp_path / "p", example_project, 20, cands)
    project = Project.load(root)
    run_project(project, progress=ProgressSink())
    points = run_curves(project, sizes=[12, 24, 48], draws=2, progress=ProgressSink())
    # two candidates learn from train (zero-shot does not); 3 sizes x 2 draws + the full run
    assert {p.candidate for p in points} == {"few-shot", "knn"}
    assert len(points) == 2 * (3 * 2 + 1)
    full = [p for p in points if p.draw == 0 and p.size > 48]
    assert len(full) == 2
    # The kNN indexes train + val in a run; its curve points index the subset alone, and
    # its full point is its own result (train only), not the run's.
    from adaptlab.engine.runner import result_key

    knn = next(c for c in project.config.candidates if c.name == "knn")
    run_key = result_key(project, knn, project.split())
    assert next(p for p in full if p.candidate == "knn").key != run_key
    assert next(p for p in full if p.candidate == "few-shot").key == result_key(
        project, project.config.candidates[0], project.split()
    )
    with sqlite3.connect(root / ".adaptlab/runs.db") as conn:
        stored = dict(conn.execute("SELECT key, info_json FROM results").fetchall())
    knn_keys = {p.key for p in points if p.candidate == "knn"}
    split = project.split()
    for key in knn_keys:
        info = json.loads(stored[key])
        assert info["indexed"] <= len(split.train), info  # never the validation split
    db = root / ".adaptlab/runs.db"
    with sqlite3.connect(db) as conn:
        results = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    again = run_curves(project, sizes=[12, 24, 48], draws=2, progress=ProgressSink())
    assert sorted(again, key=str) == sorted(points, key=str)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == results
    assert all(0.0 <= p.quality <= 1.0 for p in points)
    out = run_cli("curve", "-p", str(root), "--sizes", "12,24,48", "--draws", "2")
    assert out.exit_code == 0, out.output
    assert "learning curves" in out.output and "knn" in out.output
    bad = run_cli("curve", "-p", str(root), "-c", "zero-shot")
    assert bad.exit_code == 2 and "does not learn from the train split" in bad.output
    assert np.isfinite([p.quality for p in points]).all()


def test_curve_changes_name_the_crossings_that_involve_the_winner() -> None:
    from adaptlab.decide.curves import Crossing, LearningCurves
    from adaptlab.decide.explain import curve_changes

    crossings = [
        # a rival expected to pass the winner beyond the 500 train examples
        Crossing("finetune", "rag-knn", 1_300, 900, 2_100, 0.9, False),
        # the winner overtook two rivals; the later one is what fewer examples would change
        Crossing("rag-knn", "few-shot", 40, 20, 60, 1.0, True),
        Crossing("rag-knn", "zero-shot", 120, 80, 200, 0.95, True),
        # too unsure (half the refits) and not about the winner: left out
        Crossing("tfidf", "rag-knn", 3_000, 800, 90_000, 0.5, False),
        Crossing("tfidf", "few-shot", 300, 200, 400, 1.0, True),
        # ahead from its first size (25) on: the fits cross below it, which is no evidence
        Crossing("rag-knn", "tfidf", 12, 10, 16, 1.0, False, first=25),
    ]
    lines = curve_changes(LearningCurves([], {}, crossings, 500), "rag-knn")
    assert lines == [
        "with about 800 more labelled examples (1,300 in all), finetune is expected to pass "
        "rag-knn (95% interval 900–2,100; extrapolated from the learning curve, 90% of "
        "refits cross)",
        "rag-knn overtook zero-shot at ~120 training examples (95% interval 80–200): with "
        "fewer labelled examples than that, zero-shot would do as well",
    ]
    assert crossings[-1].text() == (
        "rag-knn overtakes tfidf below the sizes trained: it is ahead from the smallest "
        "(25 examples) on; the fits cross at ~12 (95% interval 10–16; 100% of refits "
        "cross; an extrapolation)"
    )
    assert crossings[0].text().endswith("90% of refits cross; extrapolated beyond them)")
