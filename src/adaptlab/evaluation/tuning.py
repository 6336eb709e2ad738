"""What a candidate's own search of its settings bought, read back from its result.

A tuned candidate (the prompt optimiser ``prompt-search``, or a LoRA, encoder or RAG
candidate with ``tune:``) stores the search in its result's ``info["tuning"]``: the
untuned (*default*) setting and the chosen (*tuned*) one, each scored on the whole
validation split example by example, every trial, and the budget (see
:mod:`adaptlab.strategies.tuning`). This module turns that record into tested claims:

- **what tuning bought**: tuned minus default on validation, a paired comparison on the
  same examples: McNemar's test where every example scores 0 or 1 (McNemar 1947; exact
  binomial when discordant pairs are few), else a paired bootstrap, with the percentile
  bootstrap interval of the difference;
- **the optimiser's overfit**: the tuned setting's validation figure minus its test
  figure, with the interval of each. The setting was chosen as the best of several on
  validation, so its validation figure is optimistic by construction (the winner's
  curse); test, never seen by the search, is the honest one. The drop is the size of
  that optimism as measured;
- **what it spent**: trials, minutes, calls and USD against their caps.

Like :mod:`adaptlab.evaluation.overfit`, a malformed record (another version, a hand
edit) gives None rather than an error: the rest of the summary still stands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptlab.core.format import dollars, plural
from adaptlab.evaluation.stats import (
    Interval,
    PairedTest,
    bootstrap_stat_ci,
    mcnemar,
    paired_bootstrap_stat,
)

#: The caps a search may be given, and the words for them.
CAPS = {"max_minutes": "minutes", "max_calls": "calls", "max_usd": "USD"}


@dataclass(frozen=True)
class TuningReport:
    """One tuned candidate's search, measured.

    Scores are fractions of the search's ``metric`` (higher is better). ``default`` and
    ``tuned`` are the validation figures of the untuned and the chosen setting with
    their bootstrap intervals (n = ``n_val`` examples, the same for both); ``gain`` is
    the interval of tuned minus default, ``test`` the paired test behind it (None when
    the two settings answered identically, e.g. the default was kept). ``drop`` is the
    tuned setting's validation figure minus its test figure (``test_score``; positive:
    worse on test); both None when the search chose on another metric than the one the
    candidate is scored on. ``trials``: settings scored (on any share of validation);
    ``minutes``/``calls``/``usd``: spent; ``caps``: the caps set (None: none);
    ``stopped_by``: the cap that ended the search early, if one did.
    """

    method: str
    metric: str
    default_params: Mapping[str, Any]
    tuned_params: Mapping[str, Any]
    n_val: int
    default: Interval
    tuned: Interval
    gain: Interval
    test: PairedTest | None
    test_score: float | None
    drop: float | None
    trials: int
    minutes: float
    calls: int
    usd: float
    caps: Mapping[str, float | None]
    stopped_by: str | None

    @property
    def kept_default(self) -> bool:
        """Whether the search kept the untuned setting."""
        return dict(self.tuned_params) == dict(self.default_params)

    def changed(self) -> dict[str, tuple[Any, Any]]:
        """The settings the search changed: name -> (default, tuned)."""
        keys = dict.fromkeys([*self.default_params, *self.tuned_params])
        return {
            k: (self.default_params.get(k), self.tuned_params.get(k))
            for k in keys
            if self.default_params.get(k) != self.tuned_params.get(k)
        }

    def spent(self) -> str:
        """The budget spent against its caps, in words ("9.8 of 10 minutes, 212 calls")."""
        parts = [f"{self.minutes:.1f}" + _of(self.caps.get("max_minutes")) + " minutes"]
        if self.calls or self.caps.get("max_calls") is not None:
            parts.append(f"{self.calls}" + _of(self.caps.get("max_calls"), "{:.0f}") + " calls")
        if self.usd or self.caps.get("max_usd") is not None:
            cap = self.caps.get("max_usd")
            parts.append(dollars(self.usd) + ("" if cap is None else f" of {dollars(cap)}"))
        return ", ".join(parts)

    def lines(self, percent: bool = True) -> list[str]:
        """The report in plain sentences, for the terminal and the HTML report."""

        def f(x: float) -> str:
            return f"{100 * x:.1f}%" if percent else f"{x:.3f}"

        def pts(x: float) -> str:
            return f"{100 * x:+.1f} points" if percent else f"{x:+.3f}"

        if self.kept_default:
            what = "kept the default setting"
        else:
            what = "changed " + ", ".join(
                f"{k} {_value(a)} → {_value(b)}" for k, (a, b) in self.changed().items()
            )
        head = (
            f"{self.method}, {plural(self.trials, 'trial')} in {self.spent()}"
            + (f" (stopped by {self.stopped_by})" if self.stopped_by else "")
            + f": {what}"
        )
        gain = (
            f"validation {self.metric}: default {f(self.default.estimate)} → tuned "
            f"{f(self.tuned.estimate)} on {self.n_val} examples, a gain of "
            f"{pts(self.gain.estimate)} ({pts(self.gain.low)} to {pts(self.gain.high)})"
        )
        if self.test is not None:
            p = self.test.p_value
            gain += f", {self.test.name} p {'< 0.001' if p < 0.001 else f'= {p:.2g}'}"
        if self.drop is None or self.test_score is None:
            return [head, gain]
        drop = f"tuned on validation {f(self.tuned.estimate)}, on test {f(self.test_score)}: " + (
            f"a drop of {pts(self.drop).lstrip('+')} (the search's optimism on the "
            "split it chose on)"
            if self.drop > 0
            else "no drop from validation to test"
        )
        return [head, gain, drop]


def _of(cap: float | None, spec: str = "{:g}") -> str:
    return "" if cap is None else " of " + spec.format(cap)


def _value(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _scores(entry: Any, n: int | None) -> np.ndarray | None:
    if not isinstance(entry, Mapping):
        return None
    values = entry.get("val_per_example")
    if not isinstance(values, Sequence) or not values:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    out = np.asarray(values, dtype=np.float64)
    if (n is not None and len(out) != n) or not np.all(np.isfinite(out)):
        return None
    return out


def _number(x: Any, default: float = 0.0) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else default


def tuning_report(
    info: Mapping[str, Any],
    test_score: float,
    test_metric: str,
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> TuningReport | None:
    """The report of ``info["tuning"]`` (a result's info), or None without a sound one.

    ``test_score`` is the candidate's figure on test, a fraction of ``test_metric`` (its
    primary metric's key, e.g. "accuracy"); the drop is only computed when the search
    chose on that metric.
    Intervals are percentile bootstraps at ``confidence`` with ``resamples`` resamples
    and ``seed``. Returns None when there is no record, or when the default's and the
    tuned setting's per-example validation scores are missing, of different lengths or
    not numbers.
    """
    record = info.get("tuning")
    if not isinstance(record, Mapping):
        return None
    default, tuned = record.get("default"), record.get("tuned")
    a = _scores(default, None)
    b = _scores(tuned, None if a is None else len(a))
    if a is None or b is None:
        return None
    assert isinstance(default, Mapping) and isinstance(tuned, Mapping)
    binary = bool(np.all(np.isin(a, (0.0, 1.0))) and np.all(np.isin(b, (0.0, 1.0))))
    test: PairedTest | None = None
    if np.any(a != b):
        test = (
            mcnemar(b == 1.0, a == 1.0)
            if binary
            else paired_bootstrap_stat(b, a, resamples=resamples, seed=seed)
        )
    ci = {"resamples": resamples, "confidence": confidence, "seed": seed}
    budget = record.get("budget") if isinstance(record.get("budget"), Mapping) else {}
    assert isinstance(budget, Mapping)
    trials = record.get("trials")
    stopped = budget.get("stopped_by")
    tuned_val = bootstrap_stat_ci(b, **ci)  # type: ignore[arg-type]
    metric = str(record.get("metric") or "score")
    same = metric.replace(" ", "_").lower() == test_metric.replace(" ", "_").lower()
    params = [p.get("params") for p in (default, tuned)]
    return TuningReport(
        method=str(record.get("method") or "search"),
        metric=metric,
        default_params=params[0] if isinstance(params[0], Mapping) else {},
        tuned_params=params[1] if isinstance(params[1], Mapping) else {},
        n_val=len(a),
        default=bootstrap_stat_ci(a, **ci),  # type: ignore[arg-type]
        tuned=tuned_val,
        gain=bootstrap_stat_ci(b - a, **ci),  # type: ignore[arg-type]
        test=test,
        test_score=test_score if same else None,
        drop=tuned_val.estimate - test_score if same else None,
        trials=len(trials) if isinstance(trials, Sequence) else 0,
        minutes=_number(budget.get("minutes")),
        calls=int(_number(budget.get("calls"))),
        usd=_number(budget.get("usd")),
        caps={
            cap: (_number(budget.get(cap)) if budget.get(cap) is not None else None) for cap in CAPS
        },
        stopped_by=str(stopped) if isinstance(stopped, str) and stopped else None,
    )
