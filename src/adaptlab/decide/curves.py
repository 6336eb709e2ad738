"""Learning curves: quality against the number of labelled training examples.

Each candidate that learns from the train split (a fine-tune, kNN, few-shot, the
TF-IDF baseline) is trained again on growing subsets of it, several draws per size,
and scored on the test split. Subsets are stratified by label and nested within a
draw (the 50 of draw 1 hold its 25), which is the usual design for learning curves.
Every point is an ordinary result in the run store, keyed like any other (the subset
enters the split fingerprint), so a point is never trained twice.

The curve fitted through the points is the inverse power law
``q(N) = a - b * N^(-c)`` (Figueroa et al. 2012, "Predicting sample size required for
classification performance", BMC Med. Inform. Decis. Mak. 12:8), fitted with
scipy's ``curve_fit``. Where one candidate's curve overtakes another's is found on a
log grid of N; its interval comes from refitting on bootstrap resamples of the draws
at each size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from adaptlab.config import CandidateConfig
    from adaptlab.core.progress import ProgressSink
    from adaptlab.data import Example, Split
    from adaptlab.engine.project import Project
    from adaptlab.evaluation.scoring import Scorer
    from adaptlab.store import RunStore

DEFAULT_SIZES = (25, 50, 100, 200, 500, 1000)
GRID = np.unique(np.round(np.logspace(1, 6, 400)).astype(int))  # N from 10 to 1,000,000


@dataclass(frozen=True)
class CurvePoint:
    """One trained subset: ``size`` examples, draw ``draw``, its test quality."""

    candidate: str
    size: int
    draw: int
    quality: float
    key: str


@dataclass(frozen=True)
class PowerLaw:
    """``q(N) = a - b * N^(-c)``; ``a`` is the quality the curve levels off at."""

    a: float
    b: float
    c: float

    def __call__(self, n: Any) -> Any:
        return self.a - self.b * np.power(np.asarray(n, dtype=float), -self.c)


@dataclass(frozen=True)
class Crossing:
    """Where ``candidate``'s fitted curve passes ``rival``'s, in training examples.

    ``n`` is from the fit on all points (None: not within 10..1,000,000 examples);
    ``low``/``high`` the percentile interval over bootstrap refits that found a
    crossing, ``found`` the share of them that did; ``observed`` whether ``n`` lies
    within the sizes actually trained (else it is an extrapolation).
    """

    candidate: str
    rival: str
    n: int | None
    low: int | None
    high: int | None
    found: float
    observed: bool
    first: int = 0  # the smallest size the candidate was trained at

    def text(self) -> str:
        """The crossing as one sentence, saying whether it was observed or extrapolated."""
        interval = (
            f"95% interval {self.low:,}–{self.high:,}"
            if self.low is not None and self.high is not None
            else "no interval"
        )
        head = f"{self.candidate} overtakes {self.rival}"
        if self.n is not None and self.n < self.first:
            return (
                f"{head} below the sizes trained: it is ahead from the smallest "
                f"({self.first:,} examples) on; the fits cross at ~{self.n:,} ({interval}; "
                f"{self.found:.0%} of refits cross; an extrapolation)"
            )
        where = "within the sizes trained" if self.observed else "extrapolated beyond them"
        return (
            f"{head} at ~{self.n:,} training examples ({interval}; {self.found:.0%} of "
            f"refits cross; {where})"
        )


def learns_from_train(cand: CandidateConfig) -> bool:
    """Whether a candidate's quality depends on how many labelled examples it gets."""
    from adaptlab.strategies import get_strategy

    cls = get_strategy(cand.strategy)
    options = cls.Options.model_validate(cand.params)
    if cls.trains_weights or cls.route == "rag":
        return True
    return bool(getattr(options, "k", 0) or getattr(options, "shots", 0))


def train_only(cand: CandidateConfig) -> CandidateConfig:
    """``cand`` as a learning curve trains it: from the train subset alone.

    A kNN that also indexes the validation split (``include_val``, its default) would
    hold N + |val| labelled examples at a point drawn at N (BANKING77: 80% accuracy
    "at 154 examples", 999 of them validation); its curve points index train only, the
    full point too. Other candidates are returned as they are.
    """
    from adaptlab.strategies import get_strategy

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
    from adaptlab.core.errors import ConfigError
    from adaptlab.core.progress import ProgressSink
    from adaptlab.engine.runner import Models, result_key, run_candidate
    from adaptlab.store import RunStore
    from adaptlab.store.lock import RunLock

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
        RunStore(project.store_path) as store,
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
    from adaptlab.evaluation.scoring import Scorer

    scorer = Scorer(project.config, llm_cache=project.llm_cache_path)
    try:
        return score_points(store, fingerprint, scorer)
    finally:
        scorer.close()


def score_points(store: RunStore, fingerprint: str, scorer: Scorer) -> list[CurvePoint]:
    """The stored points of a split (its fingerprint), each scored on its test answers."""
    from adaptlab.evaluation.llm_costs import sane_row

    out = []
    for name, size, draw, key in store.curve_points(fingerprint):
        rows = [sane_row(r) for r in store.predictions(key)]
        if rows:
            out.append(CurvePoint(name, size, draw, scorer.score(rows).ci.estimate, key))
    return out


@dataclass(frozen=True)
class LearningCurves:
    """A split's learning-curve points, the rivals drawn flat, and where curves cross.

    ``flat`` maps candidates whose quality does not depend on the train size (zero-shot
    prompts) to their test quality; ``n_train`` is the full train split's size.
    """

    points: list[CurvePoint]
    flat: dict[str, float]
    crossings: list[Crossing]
    n_train: int

    def fit(self, candidate: str) -> PowerLaw | None:
        pts = [p for p in self.points if p.candidate == candidate]
        return fit_power_law([p.size for p in pts], [p.quality for p in pts])


def overtakes(
    points: Sequence[CurvePoint], flat: dict[str, float], confidence: float = 0.95
) -> list[Crossing]:
    """Every crossing of a candidate's curve over another curve or a flat rival.

    Pairs whose fitted curves never cross within the grid are left out, as is a
    candidate ahead of a flat rival from its smallest size on; one ahead of another
    curve from its smallest size keeps its crossing, which :meth:`Crossing.text` then
    calls an extrapolation below the sizes trained.
    """
    by_cand: dict[str, list[CurvePoint]] = defaultdict(list)
    for p in points:
        by_cand[p.candidate].append(p)
    rivals: list[tuple[str, Sequence[CurvePoint] | float]] = [
        *by_cand.items(),
        *flat.items(),
    ]
    out = []
    for a, pts in by_cand.items():
        for b, rival in rivals:
            if b == a:
                continue
            x = crossing(pts, rival, confidence=confidence)
            if x is None or x.n is None:
                continue
            if x.n < x.first and not isinstance(rival, Sequence):
                continue  # ahead of a flat rival from the first size: nothing to learn
            out.append(dataclasses.replace(x, rival=b))
    return out


def learning_curves(
    points: Sequence[CurvePoint],
    flat: dict[str, float],
    n_train: int,
    confidence: float = 0.95,
) -> LearningCurves | None:
    """The :class:`LearningCurves` of some points (None when there are none)."""
    if not points:
        return None
    flat = {k: v for k, v in flat.items() if k not in {p.candidate for p in points}}
    return LearningCurves(list(points), flat, overtakes(points, flat, confidence), n_train)


#: A crossing enters "what would change it" only when this share of refits find it.
SURE_CROSSING = 0.8


def curve_changes(curves: LearningCurves, winner: str) -> list[str]:
    """Sentences for "what would change it" from the crossings that involve the winner.

    Two kinds, each only when at least :data:`SURE_CROSSING` of the bootstrap refits
    cross: a rival expected to pass the winner with more labelled examples (beyond the
    train split, so extrapolated), and the last rival the winner overtook within the
    sizes trained (below that many examples, that rival would do as well).
    """
    out = []
    sure = [x for x in curves.crossings if x.n is not None and x.found >= SURE_CROSSING]

    def interval(x: Crossing) -> str:
        if x.low is None or x.high is None:
            return "no interval"
        return f"95% interval {x.low:,}–{x.high:,}"

    for x in sure:
        assert x.n is not None
        if x.rival == winner and x.n > curves.n_train:
            out.append(
                f"with about {x.n - curves.n_train:,} more labelled examples ({x.n:,} in "
                f"all), {x.candidate} is expected to pass {winner} ({interval(x)}; "
                f"extrapolated from the learning curve, {x.found:.0%} of refits cross)"
            )
    overtaken = [  # observed: within the sizes trained, not before the first
        x
        for x in sure
        if x.candidate == winner and x.n is not None and x.first <= x.n <= curves.n_train
    ]
    if overtaken:
        x = max(overtaken, key=lambda x: x.n or 0)
        out.append(
            f"{winner} overtook {x.rival} at ~{x.n:,} training examples ({interval(x)}): "
            f"with fewer labelled examples than that, {x.rival} would do as well"
        )
    return out


def fit_power_law(sizes: Sequence[float], values: Sequence[float]) -> PowerLaw | None:
    """Least-squares fit of ``a - b N^-c`` (a in [0, 1], b >= 0, c in [0.01, 2]); None
    when fewer than three distinct sizes or the fit does not converge."""
    from scipy.optimize import curve_fit  # type: ignore[import-untyped]

    x = np.asarray(sizes, dtype=float)
    y = np.asarray(values, dtype=float)
    if len(set(x.tolist())) < 3:
        return None

    def f(n: np.ndarray, a: float, b: float, c: float) -> Any:
        return a - b * np.power(n, -c)

    try:
        params, _ = curve_fit(
            f,
            x,
            y,
            p0=(min(1.0, float(y.max()) + 0.05), 1.0, 0.5),
            bounds=([0.0, 0.0, 0.01], [1.0, 100.0, 2.0]),
            maxfev=20_000,
        )
    except (RuntimeError, ValueError):
        return None
    return PowerLaw(*(float(p) for p in params))


def _first_pass(a: PowerLaw, b: PowerLaw | float) -> int | None:
    """Smallest N on the grid from which ``a`` stays above ``b``."""
    qa = a(GRID)
    qb = b(GRID) if isinstance(b, PowerLaw) else np.full(GRID.shape, float(b))
    above = qa > qb
    if not above[-1]:
        return None
    below = np.nonzero(~above)[0]
    return int(GRID[0] if below.size == 0 else GRID[below[-1] + 1])


def _by_size(points: Sequence[CurvePoint]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = defaultdict(list)
    for p in points:
        out[p.size].append(p.quality)
    return dict(sorted(out.items()))


def crossing(
    candidate: Sequence[CurvePoint],
    rival: Sequence[CurvePoint] | float,
    *,
    confidence: float = 0.95,
    resamples: int = 200,
    seed: int = 0,
) -> Crossing | None:
    """Where ``candidate``'s curve overtakes ``rival``'s (a curve, or a flat quality such as
    a zero-shot candidate's); None when either curve cannot be fitted."""
    cand = _by_size(candidate)
    fit_a = fit_power_law(*_flatten(cand))
    if fit_a is None:
        return None
    name_a = candidate[0].candidate
    if isinstance(rival, float | int):
        rival_sizes: dict[int, list[float]] | None = None
        fit_b: PowerLaw | float = float(rival)
        name_b = "flat"
    else:
        rival_sizes = _by_size(rival)
        fitted = fit_power_law(*_flatten(rival_sizes))
        if fitted is None:
            return None
        fit_b, name_b = fitted, rival[0].candidate
    n = _first_pass(fit_a, fit_b)
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(resamples):
        ra = fit_power_law(*_flatten(_resample(cand, rng)))
        rb: PowerLaw | float | None = (
            fit_b if rival_sizes is None else fit_power_law(*_flatten(_resample(rival_sizes, rng)))
        )
        if ra is None or rb is None:
            continue
        hit = _first_pass(ra, rb)
        found.append(hit)
    hits = [h for h in found if h is not None]
    tail = (1 - confidence) / 2 * 100
    low, high = (
        (int(np.percentile(hits, tail)), int(np.percentile(hits, 100 - tail)))
        if hits
        else (None, None)
    )
    sizes = sorted(cand)
    observed = n is not None and sizes[0] <= n <= sizes[-1]
    return Crossing(
        name_a, name_b, n, low, high, len(hits) / len(found) if found else 0.0, observed, sizes[0]
    )


def _flatten(by_size: dict[int, list[float]]) -> tuple[list[float], list[float]]:
    xs = [float(n) for n, vs in by_size.items() for _ in vs]
    ys = [v for vs in by_size.values() for v in vs]
    return xs, ys


def _resample(by_size: dict[int, list[float]], rng: np.random.Generator) -> dict[int, list[float]]:
    return {n: list(rng.choice(vs, size=len(vs), replace=True)) for n, vs in by_size.items()}
