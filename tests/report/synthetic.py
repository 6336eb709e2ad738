"""Runs built by hand from stored predictions, for what the report and terminal say.

A project folder (``adaptlab.yaml`` and ``.adaptlab/runs.db``) holding one finished
run whose candidates are right on chosen spans of the validation and test examples,
answer in chosen times, and were timed on a machine as busy as asked: every figure
the verdict and the report show follows from the spans by hand. The rows are those of
``tests/decide/test_selection.py`` (``_rows``), with the latency set per candidate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from adaptlab.store import ResultRow, RunStore
from tests.decide.test_selection import LABELS, Span, _rows

N_VAL = N_TEST = 200
RUN_ID = "5a1e000000000001"  # an id with a digit-e-digit in it: not a number to a reader


class Spec(NamedTuple):
    """One candidate: the rows it is right on (validation, test), its latency in ms, the
    share of the machine other processes used while it was timed (None: quiet), and
    more of its result's info."""

    val: Span
    test: Span
    latency_ms: float = 3.0
    other_cpu_share: float | None = None
    predict_cpu_s: float = 1.0
    info: dict[str, Any] | None = None  # more of the result's info (e.g. a tuning record)
    strategy: str = "zero-shot"


#: ``slow`` is one example ahead of ``fast`` on validation (150 against 149 of 200, 51
#: and 50 discordant rows: within noise), and no measure the rule weighs tells them
#: apart (equal CPU cost; both latencies under the rule's 10 ms floor; nothing
#: trained), so ``slow`` wins on its figure. On test ``fast`` is right on 40 rows more
#: (190 against 150, McNemar 40-0: significantly more accurate), and the winner is
#: significantly more accurate than ``weak`` (150 against 100).
ONE_AHEAD: dict[str, Spec] = {
    "slow": Spec((0, 150), 150, latency_ms=9.0, other_cpu_share=0.65),
    "fast": Spec((51, 200), 190, latency_ms=3.0, other_cpu_share=0.4),
    "weak": Spec(100, 100),
}

#: ``slow`` leads significantly on validation (190 against 150) but ``fast`` is
#: significantly better on test (190 against 150); ``slow`` answers in 22 s and costs
#: fractions of a millionth of a dollar per request: numbers an exponent would print.
SIGNIFICANT_ON_VAL: dict[str, Spec] = {
    "slow": Spec(190, 150, latency_ms=22_431.0, predict_cpu_s=0.000_05),
    "fast": Spec(150, 190, latency_ms=3.0, predict_cpu_s=0.000_05),
}


def config(spec: dict[str, Spec], **profile: Any) -> dict[str, Any]:
    """The project configuration of a run of ``spec`` (``profile``: its profile keys)."""
    return {
        "name": "synthetic",
        "data": {"path": "d.jsonl"},
        "labels": {"a": "first", "b": "second"},
        "candidates": [{"name": n, "strategy": s.strategy} for n, s in spec.items()],
        "evaluation": {"bootstrap_resamples": 200, "baseline": False},
        "profile": profile,
    }


def write_project(root: Path, spec: dict[str, Spec], **profile: Any) -> Path:
    """A project folder at ``root`` with one finished run of ``spec`` (``RUN_ID``), its
    ``adaptlab.yaml`` holding the same configuration as the run."""
    cfg = config(spec, **profile)
    (root / ".adaptlab").mkdir(parents=True)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    gold_test = [LABELS[i % 2] for i in range(N_TEST)]
    gold_val = [LABELS[i % 2] for i in range(N_VAL)]
    with RunStore(root / ".adaptlab" / "runs.db") as store:
        store.start_run(
            RUN_ID,
            project=cfg["name"],
            config=cfg,
            data_fingerprint="f",
            seed=0,
            model={},
            split={"train": 1000, "val": N_VAL, "test": N_TEST},
        )
        for pos, (name, s) in enumerate(spec.items()):
            info: dict[str, Any] = dict(s.info or {})
            if s.other_cpu_share is not None:
                info["machine_load"] = {"other_cpu_share": s.other_cpu_share}
            result = ResultRow(
                name, name, s.strategy, {}, 0.0, 0.0, 1.0, s.predict_cpu_s, N_TEST, False, info
            )

            def timed(rows: list[Any], ms: float = s.latency_ms) -> list[Any]:
                return [dataclasses.replace(r, latency_ms=ms) for r in rows]

            store.save_result(
                result,
                timed(_rows(gold_test, s.test)),
                [],
                val_predictions=timed(_rows(gold_val, s.val)),
            )
            store.link(RUN_ID, pos, name, name, reused=False)
        store.finish_run(RUN_ID)
    return root


def set_profile(root: Path, **profile: Any) -> None:
    """Change the ``profile:`` of the project's ``adaptlab.yaml`` (the run keeps its own)."""
    path = root / "adaptlab.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["profile"] = {**(cfg.get("profile") or {}), **profile}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
