"""Learning curves: quality against the number of labelled training examples.

The points are measured elsewhere: ``adaptlab curve`` trains them
(:mod:`adaptlab.engine.curves`) and the run's summary scores them
(:func:`adaptlab.evaluation.learning.score_points`). Here they are analysed.

The curve fitted through the points is the inverse power law
``q(N) = a - b * N^(-c)`` (Figueroa et al. 2012, "Predicting sample size required for
classification performance", BMC Med. Inform. Decis. Mak. 12:8), fitted with
scipy's ``curve_fit``. Where one candidate's curve overtakes another's is found on a
log grid of N; its interval comes from refitting on bootstrap resamples of the draws
at each size. :func:`curve_evidence` picks the crossings that bear on a verdict.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from adaptlab.evaluation.learning import CurvePoint

GRID = np.unique(np.round(np.logspace(1, 6, 400)).astype(int))  # N from 10 to 1,000,000


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


@dataclass(frozen=True)
class LearningCurves:
    """A split's learning-curve points, the rivals drawn flat, and where curves cross.

    ``flat`` maps candidates whose quality does not depend on the train size (zero-shot
    prompts) to their test quality; ``n_train`` is the full train split's size. The
    sequences are kept as tuples and ``flat`` as a read-only mapping.
    """

    points: Sequence[CurvePoint]
    flat: Mapping[str, float]
    crossings: Sequence[Crossing]
    n_train: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        object.__setattr__(self, "flat", MappingProxyType(dict(self.flat)))
        object.__setattr__(self, "crossings", tuple(self.crossings))

    def fit(self, candidate: str) -> PowerLaw | None:
        """The power law through ``candidate``'s points (None: fewer than three sizes)."""
        pts = [p for p in self.points if p.candidate == candidate]
        return fit_power_law([p.size for p in pts], [p.quality for p in pts])


def overtakes(
    points: Sequence[CurvePoint], flat: Mapping[str, float], confidence: float = 0.95
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
    flat: Mapping[str, float],
    n_train: int,
    confidence: float = 0.95,
) -> LearningCurves | None:
    """The :class:`LearningCurves` of some points (None when there are none)."""
    if not points:
        return None
    flat = {k: v for k, v in flat.items() if k not in {p.candidate for p in points}}
    return LearningCurves(tuple(points), flat, overtakes(points, flat, confidence), n_train)


#: A crossing enters "what would change it" only when this share of refits find it.
SURE_CROSSING = 0.8


@dataclass(frozen=True)
class CurveEvidence:
    """The crossings of a verdict's winner that :data:`SURE_CROSSING` of the refits find.

    ``passing``: rivals expected to pass the winner beyond the train split (each an
    extrapolation), in the order of :attr:`LearningCurves.crossings`; ``overtaken``: the
    last rival the winner overtook within the sizes trained (below that many examples
    the rival would do as well), or None.
    """

    winner: str
    n_train: int
    passing: tuple[Crossing, ...]
    overtaken: Crossing | None

    @property
    def empty(self) -> bool:
        """Whether no crossing bears on the winner."""
        return not self.passing and self.overtaken is None


def curve_evidence(curves: LearningCurves, winner: str) -> CurveEvidence:
    """The crossings of ``curves`` that involve ``winner`` and would change the verdict.

    Two kinds, each only when at least :data:`SURE_CROSSING` of the bootstrap refits
    cross: a rival expected to pass the winner with more labelled examples (its
    crossing beyond the train split, so extrapolated), and the last rival the winner
    overtook within the sizes trained (the crossing with the largest ``n`` between the
    winner's smallest size and the train split's size).
    """
    sure = [x for x in curves.crossings if x.n is not None and x.found >= SURE_CROSSING]
    passing = tuple(
        x for x in sure if x.rival == winner and x.n is not None and x.n > curves.n_train
    )
    overtaken = [  # observed: within the sizes trained, not before the first
        x
        for x in sure
        if x.candidate == winner and x.n is not None and x.first <= x.n <= curves.n_train
    ]
    last = max(overtaken, key=lambda x: x.n or 0) if overtaken else None
    return CurveEvidence(winner, curves.n_train, passing, last)


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
