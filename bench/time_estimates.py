"""Time estimates against the measured wall time, on three candidates, in one run.

Builds the bundled support-tickets project (``--rows`` tickets, seed 0) with three
candidates: the encoder fine-tune (``finetune``, method head, 8 epochs), SmolLM2-135M
prompted zero-shot (constrained answers) and SmolLM2 LoRA (``--lora-epochs``). For each,
first the estimate ``adaptlab run --dry-run`` prints
(:func:`adaptlab.engine.estimate.estimate_times` with fresh models, so loading counts as
in the run), then the candidate run alone
(``run_project(only=[name], force=True)``: loading, fit, answers, timing passes and
latency requests), timed. Prints each pair, the ratio estimate/measured and whether
the measured time fell in the printed range; the goal is a ratio within 1/1.5 .. 1.5
for all three. Exits 1 when it is missed.

    python bench/time_estimates.py [--rows 300] [--lora-epochs 1]

Results: bench/results/time_estimates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "time_estimates.json"
GOAL = 1.5


def make_project(root: Path, rows: int, lora_epochs: float) -> Path:
    from adaptlab.engine.scaffold import init_project

    project = init_project(root / "tickets", example="support-tickets")
    data = project / "data" / "tickets.jsonl"
    lines = data.read_text().splitlines()
    random.Random(0).shuffle(lines)
    data.write_text("\n".join(lines[:rows]) + "\n")
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    keep = {"finetune", "smollm2-zero-shot", "smollm2-lora"}
    cfg["candidates"] = [c for c in cfg["candidates"] if c["name"] in keep]
    for cand in cfg["candidates"]:
        if cand["name"] == "smollm2-lora":
            cand["params"]["epochs"] = lora_epochs
    cfg["evaluation"]["baseline"] = False
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def fit_record(root: Path, name: str) -> tuple[float, str]:
    """The stored result's fit seconds and how far training went (early stopping)."""
    from adaptlab.engine.project import Project
    from adaptlab.store import RunStore

    project = Project.load(root)
    with RunStore(project.store) as store:
        run = store.latest_run()
        assert run is not None
        (row,) = [r for r in store.run_candidates(run["id"]) if r["name"] == name]
        result = store.result(row["result_key"])
    info = result.info
    if "epochs_run" in info:
        trained = f"{info['epochs_run']} of {info.get('steps_per_epoch')}-step epochs run"
    elif isinstance(info.get("training"), dict):
        t = info["training"]
        trained = f"step {t.get('last_step')} of {t.get('max_steps')}"
    else:
        trained = "no training"
    return result.fit_seconds, trained


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300, help="tickets kept (seed 0)")
    ap.add_argument("--lora-epochs", type=float, default=1.0)
    ap.add_argument("--only", action="append", help="this candidate only (repeat)")
    args = ap.parse_args()

    from adaptlab.engine.estimate import estimate_times
    from adaptlab.engine.project import Project
    from adaptlab.engine.runner import Models, run_project
    from adaptlab.evaluation.machine import LoadMeter

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), args.rows, args.lora_epochs)
        project = Project.load(root)
        split = project.split()
        print(
            f"support tickets, {args.rows} rows: {len(split.train)} train / {len(split.val)} "
            f"val / {len(split.test)} test; LoRA {args.lora_epochs:g} epoch(s); "
            f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            flush=True,
        )
        for cand in project.config.candidates:
            if args.only and cand.name not in args.only:
                continue
            with closing(Models(project)) as models:
                (est,) = estimate_times(project, [cand], models, split)
            print(f"estimate  {est.line()} [probe {est.probe_seconds:.0f} s]", flush=True)
            meter = LoadMeter()
            with meter:
                t0 = time.perf_counter()
                run_project(Project.load(root), only=[cand.name], force=True)
                measured = time.perf_counter() - t0
            assert est.seconds is not None
            ratio = est.seconds / measured
            fit, trained = fit_record(root, cand.name)
            inside = est.low <= measured <= est.high
            print(
                f"measured  {cand.name}: {measured:.0f} s; estimate/measured {ratio:.2f} "
                f"({'inside' if inside else 'outside'} the range {est.low:.0f}-{est.high:.0f} s)"
                f"; load {os.getloadavg()[0]:.1f}; fit {fit:.0f} s, {trained}",
                flush=True,
            )
            out.append(
                {
                    "candidate": cand.name,
                    "estimate_s": round(est.seconds, 1),
                    "low_s": round(est.low, 1),
                    "high_s": round(est.high, 1),
                    "probe_s": round(est.probe_seconds, 1),
                    "parts": {k: round(v, 1) for k, v in est.parts.items()},
                    "measured_s": round(measured, 1),
                    "ratio": round(ratio, 3),
                    "in_range": inside,
                    "fit_s": round(fit, 1),
                    "trained": trained,
                    "machine_load": meter.as_info(),
                }
            )
    worst = max(max(r["ratio"], 1 / r["ratio"]) for r in out)
    ok = worst <= GOAL
    print(
        f"worst factor between estimate and measured: {worst:.2f} (goal <= {GOAL}); "
        + ("goal met" if ok else "goal missed")
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": args.rows, "results": out, "worst": worst}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
