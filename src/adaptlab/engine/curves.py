"""Learning-curve runs: a candidate trained again on growing subsets of the train split.

Each candidate that learns from the train split (a fine-tune, kNN, few-shot, the
TF-IDF baseline; :func:`adaptlab.evaluation.learning.learns_from_train`) is trained
again on growing subsets of it, several draws per size, and scored on the test
split. Subsets are stratified by label and nested within a draw (the 50 of draw 1
hold its 25), which is the usual design for learning curves. Every point is an
ordinary result in the run store, keyed like any other (the subset enters the split
fingerprint), so a point is never trained twice.

Scoring the stored points is :func:`adaptlab.evaluation.learning.score_points`;
fitting curves through them and finding where they cross is
:mod:`adaptlab.decide.curves`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence

from adaptlab.config import CandidateConfig
from adaptlab.core.errors import ConfigError
from adaptlab.core.progress import ProgressSink
from adaptlab.data import Example, Split
from adaptlab.engine.project import Project
from adaptlab.engine.runner import Models, result_key, run_candidate
from adaptlab.evaluation.learning import CurvePoint, learns_from_train, score_points
from adaptlab.evaluation.scoring import Scorer
from adaptlab.store import RunStore
from adaptlab.store.lock import RunLock
from adaptlab.strategies import get_strategy

#: Training-subset sizes ``adaptlab curve`` trains by default.
DEFAULT_SIZES = (25, 50, 100, 200, 500, 1000)


def train_only(cand: CandidateConfig) -> CandidateConfig:
    """``cand`` as a learning curve trains it: from the train subset alone.

    A kNN that also indexes the validation split (``include_val``, its default) would
    hold N + |val| labelled examples at a point drawn at N (BANKING77: 80% accuracy
    "at 154 examples", 999 of them validation); its curve points index train only, the
    full point too. Other candidates are returned as they are.
    """
    fields = get_strategy(cand.strategy).Options.model_fields
    if "include_val" in fields and cand.params.get("include_val", True):
        return cand.model_copy(update={"params": {**cand.params, "include_val": False}})
    return cand


def nested_subsets(
    train: Sequence[Example], sizes: Sequence[int], draw: int, seed: int, stratified: bool
) -> dict[int, list[Example]]:
    """``{size: examples}`` for one draw; each size holds every smaller one.

    Stratified: each label keeps its share of the train split (at least one example per
    label once ``size`` reaches the number of labels). Sizes at or above the train
    split's size are left out (the full run is that point).
    """
    rng = random.Random(f"{seed}:{draw}")
    if not stratified:
        order = list(train)
        rng.shuffle(order)
        return {n: order[:n] for n in sizes if n < len(train)}
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in train:
        by_label[ex.label].append(ex)
    for label in sorted(by_label):
        rng.shuffle(by_label[label])
    out = {}
    for n in sizes:
        if n >= len(train):
            continue
        share = {k: len(v) / len(train) for k, v in by_label.items()}
        take = {k: max(1 if n >= len(by_label) else 0, math.floor(n * s)) for k, s in share.items()}
        # hand the remainder to the labels with the largest fractional parts
        rest = n - sum(take.values())
        for k in sorted(share, key=lambda k: (-(n * share[k] % 1), k))[: max(rest, 0)]:
            take[k] += 1
        out[n] = [ex for k in sorted(by_label) for ex in by_label[k][: take[k]]]
    return out


def _subsplit(split: Split, subset: list[Example], size: int, draw: int) -> Split:
    fp = hashlib.sha256(json.dumps([split.fingerprint, size, draw]).encode()).hexdigest()[:16]
    return dataclasses.replace(split, train=subset, fingerprint=fp)


def run_curves(
    project: Project,
    *,
    candidates: Sequence[str] | None = None,
    sizes: Sequence[int] = DEFAULT_SIZES,
    draws: int = 3,
    progress: ProgressSink | None = None,
) -> list[CurvePoint]:
    """Train and score every (candidate, size, draw) not yet in the store; all points.

    Timing is left out of curve points (no latency samples, one timing pass, no
    consistency samples): they measure quality only. Raises ConfigError for a named
    candidate that does not exist or does not learn from the train split.
    """
    progress = progress or ProgressSink()
    cfg = project.config
    by_name = {c.name: c for c in cfg.candidates}
    for name in candidates or ():
        if name not in by_name:
            raise ConfigError(
                f"no candidate named {name}",
                file=project.root / "adaptlab.yaml",
                fix="choose from: " + ", ".join(by_name),
            )
        if not learns_from_train(by_name[name]):
            raise ConfigError(
                f"candidate '{name}' does not learn from the train split: its curve is flat",
                file=project.root / "adaptlab.yaml",
                fix="name a fine-tune, kNN, few-shot or tfidf-lr candidate",
            )
    chosen = (
        [by_name[n] for n in candidates]
        if candidates
        else [c for c in cfg.candidates if learns_from_train(c)]
    )
    quiet = cfg.model_copy(
        update={
            "evaluation": cfg.evaluation.model_copy(
                update={"latency_samples": 0, "timing_repeats": 1, "consistency_samples": 0}
            )
        }
    )
    measured = dataclasses.replace(project, config=quiet)
    split = project.split()
    stratified = cfg.task == "classification"
    subsets = {d: nested_subsets(split.train, sizes, d, cfg.seed, stratified) for d in range(draws)}
    plan = []
    for cand in map(train_only, chosen):
        for d in range(draws):
            for n, subset in subsets[d].items():
                sub = _subsplit(split, subset, n, d)
                plan.append((cand, n, d, sub, result_key(measured, cand, sub)))
        if cand not in chosen:  # changed for the curve: the full point is its own result
            plan.append((cand, len(split.train), 0, split, result_key(measured, cand, split)))
    project.prepare_state()
    models = Models(measured)
    points: list[CurvePoint] = []
    with (
        RunLock(project.run_lock_path).acquire(lambda holder: None),
        RunStore(project.store) as store,
    ):
        todo = {p[4] for p in plan if not store.has_result(p[4])}
        with progress.task("learning-curve points", len(todo)) as advance:
            for cand, n, d, sub, key in plan:
                if key in todo:
                    run_candidate(measured, cand, sub, key, models, store, progress)
                    advance(1)
                store.add_curve_point(split.fingerprint, cand.name, n, d, key)
        for cand in chosen:  # the full train split is the last point: the run's own result
            key = result_key(project, cand, split)
            if train_only(cand) is cand and store.has_result(key):
                store.add_curve_point(split.fingerprint, cand.name, len(split.train), 0, key)
        models.close()
        points = curve_points(store, split.fingerprint, project)
    return points


def curve_points(store: RunStore, fingerprint: str, project: Project) -> list[CurvePoint]:
    """Every stored point of this split, scored on test (quality = the primary metric)."""
    scorer = Scorer(project.config, llm_cache=project.llm_cache_path)
    try:
        return score_points(store, fingerprint, scorer)
    finally:
        scorer.close()
