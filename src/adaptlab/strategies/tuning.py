"""Bounded hyper-parameter search for a candidate: successive halving under a time cap.

A candidate with ``tune:`` searches a small grid of its own settings on the
validation split and keeps the best; the test split is answered once, by the chosen
setting, through the candidate's normal ``predict``. The search is successive
halving (Jamieson & Talwalkar 2016; Li et al. 2018, *Hyperband*): every setting is
first trained with a fraction ``eta**-(rungs-1)`` of its resource (epochs), the best
``1/eta`` move up a rung with ``eta`` times more, and the last rung trains with the
full resource. The candidate's default setting is always one trial, trained with
its full resource and scored on the full validation split, so default → tuned is a
paired comparison on the same examples.

``max_minutes`` is a hard cap: before a trial starts, its seconds are forecast from
the trials already done (a straight line through seconds vs resource, times
:data:`SAFETY`), and a trial that would end past the cap is not started; what was
left out is recorded and said. Every finished trial is stored as a JSON file named
by a hash of its setting and resource (:class:`TrialStore`), so a rerun or a
resumed, interrupted search reads it back instead of training again.

Own code rather than optuna: the grids here are a handful of settings (a sampler
adds nothing over enumerating them), optuna's ``timeout`` only stops *starting*
trials once the time is already spent (a trial started at minute 19 of 20 runs on),
and its pruners need intermediate reports from inside the trainer; the trial files
already resume the search, so an RDB study would be a second record of the same
trials. The driver is ~200 lines and pure Python (no torch).

The record it leaves is ``info["tuning"]`` (see :func:`successive_halving`), read
by the report.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    model_serializer,
)

from adaptlab.core.errors import ConfigError

#: Forecast seconds are multiplied by this before the cap is checked: a trial's time
#: varies with the machine's load, and the cap is never to be passed.
SAFETY = 1.25
#: Version of a stored trial's meaning; bumped when what a trial computes changes.
TRIAL_VERSION = 1


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's yes/true would otherwise pass as 1
        raise ValueError(f"expected a number, got {value!r}")
    return value


#: A searched value that must be > 0 (a learning rate, epochs); "1e-4" (a YAML string) is
#: read as the number.
PositiveFloat = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
#: A searched whole number >= 1 (a rank, k); 8.0 and true are refused.
PositiveInt = Annotated[StrictInt, Field(gt=0)]
#: A searched share in [0, 1] (a weight); true is refused.
UnitFloat = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1)]


class TuneOptions(BaseModel):
    """The budget of a search; each route's ``tune:`` adds the values it searches.

    Every list of values must be non-empty; the candidate's own value is always tried
    too (it is the default trial), so a list need not repeat it.
    """

    model_config = ConfigDict(extra="forbid")

    max_minutes: float = Field(
        gt=0,
        le=7 * 24 * 60,
        description="Hard cap on the search's wall time in minutes: a trial forecast to end "
        "past it is not started (and the report says which were left out).",
    )
    eta: int = Field(
        default=3,
        ge=2,
        le=10,
        description="Successive halving's reduction factor: the best 1/eta of each rung "
        "move up with eta times the resource.",
    )

    def space(self) -> dict[str, list[Any]]:
        """The searched values by parameter name (only the lists that are set)."""
        skip = set(TuneOptions.model_fields)
        out: dict[str, list[Any]] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name not in skip and value is not None:
                out[name] = list(value)
        return out


class Tunable(BaseModel):
    """Mixin of a strategy's options that take ``tune:``; ``tune`` enters a dump (and so
    the result key) only when set, so an untuned candidate's key is what it was."""

    @model_serializer(mode="wrap")
    def _drop_unset_tune(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        out: dict[str, object] = handler(self)
        if out.get("tune", 0) is None:
            del out["tune"]
        return out


def check_values(name: str, values: Sequence[Any] | None) -> None:
    """Refuse an empty or repeating list of values (pydantic checks each value's type)."""
    if values is None:
        return
    if not values:
        raise ValueError(f"tune.{name} is an empty list; give at least one value or remove it")
    if len(set(values)) != len(values):
        raise ValueError(f"tune.{name} repeats a value: {list(values)}; list each value once")


def grid(space: Mapping[str, Sequence[Any]], default: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of ``space``'s values, the default first and not repeated.

    A parameter the space does not list keeps its default value.
    """
    names = list(default)
    axes = [list(space.get(n, [default[n]])) for n in names]
    out = [dict(default)]
    for combo in itertools.product(*axes):
        setting = dict(zip(names, combo, strict=True))
        if setting not in out:
            out.append(setting)
    return out


def rungs_for(n_settings: int, eta: int) -> int:
    """Rungs of successive halving for ``n_settings`` besides the default: enough that the
    last rung holds at most ``eta`` settings (1 when there are at most ``eta``)."""
    if n_settings <= 1:
        return 1
    return max(1, math.ceil(math.log(n_settings, eta) - 1e-9))


def planned_trials(n_settings: int, eta: int) -> list[int]:
    """Settings trained per rung, the default's trial not counted (e.g. 9, eta 3 → [9, 3])."""
    out, n = [], n_settings
    for _ in range(rungs_for(n_settings, eta)):
        out.append(n)
        n = max(1, math.ceil(n / eta))
    return out if n_settings else []


@dataclass
class Outcome:
    """What one trial measured on the validation split (``per_example`` in its order)."""

    per_example: list[float]
    calls: int = 0
    usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(self.per_example) / len(self.per_example) if self.per_example else 0.0


class TrialStore:
    """Finished trials as JSON files in ``folder``, one per (setting, resource fraction)."""

    def __init__(self, folder: Path, data: str = "") -> None:
        """``data``: a fingerprint of what the trials are trained and scored on (the
        train and validation examples); a trial of other data is never read back."""
        self.folder = folder
        self.data = data

    def key(self, params: Mapping[str, Any], fraction: float) -> str:
        blob = json.dumps(
            {
                "v": TRIAL_VERSION,
                "params": dict(params),
                "fraction": round(fraction, 9),
                "data": self.data,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def dir(self, params: Mapping[str, Any], fraction: float) -> Path:
        """The trial's own folder (its training output goes here too)."""
        return self.folder / self.key(params, fraction)

    def get(self, params: Mapping[str, Any], fraction: float) -> dict[str, Any] | None:
        path = self.dir(params, fraction) / "trial.json"
        if not path.is_file() or path.is_symlink():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged record costs the trial again, never a crash
        ok = isinstance(data, dict) and isinstance(data.get("val_per_example"), list)
        return data if ok else None

    def put(self, params: Mapping[str, Any], fraction: float, record: dict[str, Any]) -> None:
        folder = self.dir(params, fraction)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "trial.json.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(folder / "trial.json")  # a kill mid-write leaves no half record


#: ``evaluate(params, fraction, folder)``: train (or fit) ``params`` with ``fraction``
#: of the resource into ``folder`` and score it on the full validation split.
Evaluate = Callable[[dict[str, Any], float, Path], Outcome]


@dataclass
class Search:
    """The finished search: the record for ``info["tuning"]`` and the chosen setting."""

    record: dict[str, Any]
    tuned: dict[str, Any]
    tuned_folder: Path
    default_folder: Path


def successive_halving(
    default: dict[str, Any],
    space: Mapping[str, Sequence[Any]],
    evaluate: Evaluate,
    store: TrialStore,
    *,
    max_minutes: float,
    eta: int,
    units: Callable[[dict[str, Any], float], float],
    n_val: int,
    metric: str = "accuracy",
    note: Callable[[str], None] = lambda _m: None,
    clock: Callable[[], float] = time.monotonic,
    halving: bool = True,
    answered: Callable[[float], int] | None = None,
) -> Search:
    """Search ``space`` around ``default``; return the record of the contract and the winner.

    ``units(params, fraction)`` is a trial's work in any unit (e.g. epochs x training
    examples), for the forecast. The default is trained first, with the full resource
    (fraction 1); then the other settings of :func:`grid` by successive halving;
    the setting with the highest mean validation score of the full-resource trials
    wins (ties keep the default, then the earlier setting). Trials found in ``store``
    are read back, not run; their stored seconds count against ``max_minutes`` (the
    cap is on the whole search, across interruptions). The record is
    ``{"method", "metric", "space", "default", "tuned", "trials", "budget",
    "left_out"}``: the default and tuned entries hold ``params``, ``val_score`` and
    ``val_per_example`` (``n_val`` numbers, in the validation split's order);
    ``left_out`` lists ``{"params", "rung", "forecast_seconds"}`` of trials the cap
    kept from starting. ``halving=False`` tries every setting with the full resource
    (a grid; for a candidate whose trials cost no training). ``answered(fraction)``:
    where the resource is validation inputs (a prompted candidate's paid answers), how
    many of them a trial of ``fraction`` answers and scores (its ``val_per_example``
    holds that many); None: every trial scores all ``n_val``.
    """
    if n_val == 0:
        raise ConfigError(
            "tune: chooses a setting on the validation split, and this project's is empty",
            fix="set data.val_size (e.g. 0.2) in adaptlab.yaml, or remove tune: from the candidate",
        )
    cap = max_minutes * 60.0
    start = clock()
    stored_seconds = 0.0
    trials: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    stopped_by: str | None = None
    full: dict[str, dict[str, Any]] = {}  # setting json -> its full-resource trial

    def spent() -> float:
        return stored_seconds + (clock() - start)

    def forecast(params: dict[str, Any], fraction: float) -> float | None:
        done = [(float(t["units"]), float(t["seconds"])) for t in trials]
        if not done:
            return None
        u = units(params, fraction)
        xs = [x for x, _ in done]
        ys = [y for _, y in done]
        if len(set(xs)) >= 2:  # seconds = a + b * units, least squares, both >= 0
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            b = sum((x - mx) * (y - my) for x, y in done) / sum((x - mx) ** 2 for x in xs)
            b = max(b, 0.0)
            a = max(my - b * mx, 0.0)
            guess: float = a + b * u
        else:  # one size seen so far: proportional to the largest trial
            big = max(done)
            guess = big[1] * u / big[0] if big[0] else big[1]
        return guess * SAFETY

    def run(
        params: dict[str, Any], fraction: float, rung: int, *, must: bool
    ) -> dict[str, Any] | None:
        nonlocal stored_seconds, stopped_by
        folder = store.dir(params, fraction)
        stored = store.get(params, fraction)
        reused = stored is not None
        if stored is None:
            guess = forecast(params, fraction)
            if not must and guess is not None and spent() + guess > cap:
                left_out.append(
                    {"params": params, "rung": rung, "forecast_seconds": round(guess, 1)}
                )
                stopped_by = "max_minutes"
                return None
            t0 = clock()
            outcome = evaluate(dict(params), fraction, folder)
            n_scored = n_val if answered is None else answered(fraction)
            if len(outcome.per_example) != n_scored:
                raise RuntimeError(
                    f"a trial scored {len(outcome.per_example)} validation examples, not {n_scored}"
                )
            stored = {
                "params": params,
                "fraction": fraction,
                "n_val": n_scored,
                "val_score": outcome.score,
                "val_per_example": outcome.per_example,
                "seconds": clock() - t0,
                "calls": outcome.calls,
                "usd": outcome.usd,
                "units": units(params, fraction),
                **outcome.extra,
            }
            store.put(params, fraction, stored)
        else:
            stored_seconds += float(stored.get("seconds", 0.0))
            note(f"tuning: trial {params} (fraction {fraction:g}) read back, not retrained")
        trial = {
            "params": params,
            "rung": rung,
            "fraction": fraction,
            "n_val": stored["n_val"],
            "val_score": stored["val_score"],
            "seconds": stored["seconds"],
            "calls": stored.get("calls", 0),
            "usd": stored.get("usd", 0.0),
            "units": stored.get("units", units(params, fraction)),
            "reused": reused,
        }
        trials.append(trial)
        if fraction == 1.0:
            full[json.dumps(params, sort_keys=True)] = {**stored, "folder": folder}
        return stored

    others = grid(space, default)[1:]
    n_rungs = rungs_for(len(others), eta) if halving else 1
    run(default, 1.0, n_rungs - 1, must=True)  # the baseline of the paired comparison
    if spent() > cap:
        stopped_by = "max_minutes"
    alive = list(others)
    for rung in range(n_rungs):
        if stopped_by:
            left_out.extend({"params": p, "rung": rung, "forecast_seconds": None} for p in alive)
            break
        fraction = float(eta) ** (rung - n_rungs + 1)
        scored: list[tuple[float, int, dict[str, Any]]] = []
        for i, params in enumerate(alive):
            if stopped_by:
                left_out.append({"params": params, "rung": rung, "forecast_seconds": None})
                continue
            got = run(params, fraction, rung, must=False)
            if got is not None:
                scored.append((got["val_score"], -i, params))
        if rung < n_rungs - 1:
            keep = max(1, math.ceil(len(alive) / eta))
            alive = [p for *_, p in sorted(scored, key=lambda s: (s[0], s[1]), reverse=True)][:keep]
    if left_out:
        note(
            f"tuning stopped at the {max_minutes:g}-minute cap: {len(left_out)} trial(s) not "
            "started; raise tune.max_minutes to run them (a new cap is a new candidate "
            "result, so its trials run again)"
        )

    best_key = json.dumps(default, sort_keys=True)
    for k, t in full.items():
        if t["val_score"] > full[best_key]["val_score"]:
            best_key = k
    best = full[best_key]
    base = full[json.dumps(default, sort_keys=True)]
    seconds = spent()
    record = {
        "method": "successive halving" if n_rungs > 1 else "grid",
        "metric": metric,
        "space": {k: list(v) for k, v in space.items()},
        "default": _entry(base),
        "tuned": _entry(best),
        "trials": [{k: v for k, v in t.items() if k != "units"} for t in trials],
        "budget": {
            "max_minutes": max_minutes,
            "max_calls": None,
            "max_usd": None,
            "minutes": round(seconds / 60.0, 3),
            "calls": sum(t["calls"] for t in trials),
            "usd": sum(t["usd"] for t in trials),
            "stopped_by": stopped_by,
        },
        "eta": eta,
        "rungs": n_rungs,
        "left_out": left_out,
    }
    return Search(record, dict(best["params"]), best["folder"], base["folder"])


def _entry(trial: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "params": dict(trial["params"]),
        "val_score": trial["val_score"],
        "val_per_example": list(trial["val_per_example"]),
    }


def plan_line(n_settings: int, eta: int, max_minutes: float, *, halving: bool = True) -> str:
    """The dry run's sentence for a tuned candidate: trials planned and the cap.

    ``n_settings``: the settings besides the default (``len(grid(...)) - 1``)."""
    minutes = f"{max_minutes:g} minute{'' if max_minutes == 1 else 's'}"
    per_rung = planned_trials(n_settings, eta)
    if not halving or len(per_rung) <= 1:
        return (
            f"tuning: grid of {n_settings + 1} settings (the default included), each scored "
            f"on the validation split, at most {n_settings + 1} trials, capped at {minutes}"
        )
    shape = " + ".join(str(n) for n in per_rung) if per_rung else "0"
    return (
        f"tuning: successive halving (eta {eta}) over {n_settings + 1} settings, at most "
        f"{sum(per_rung) + 1} trials (the default + {shape} per rung), capped at {minutes}"
    )


def tuning_plan(options: BaseModel, project: Any = None) -> str | None:
    """The dry run's line for a candidate's options, None when it has no ``tune:``.

    Options that take ``tune:`` give ``tuning_space() -> (default, space)``; a class
    attribute ``tune_halving = False`` marks a grid (trials that train nothing), and
    ``tune_reads_project = True`` options whose default setting is partly the project's
    (``tuning_space(project)``, ``project`` the loaded ``ProjectConfig``).
    """
    tune = getattr(options, "tune", None)
    if not isinstance(tune, TuneOptions):
        return None
    space_of = getattr(options, "tuning_space", None)
    if space_of is None:
        return None
    reads = bool(getattr(options, "tune_reads_project", False))
    default, space = space_of(project) if reads else space_of()
    n = len(grid(space, default)) - 1
    halving = bool(getattr(options, "tune_halving", True))
    return plan_line(n, tune.eta, tune.max_minutes, halving=halving)
