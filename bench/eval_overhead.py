"""Evaluation overhead of a default ``adaptlab run`` on data we did not write.

A project is made from the shared German classification set
(``../shared/data/german_intents/train.csv``, 1,996 requests, 18 domains) exactly as
``adaptlab init --data`` makes it (the default candidates), and run once from scratch.
Each candidate stores the wall seconds of its stages (``info["seconds"]``: fit, test
answers, validation answers, timing passes, one-at-a-time latencies, consistency); the
overhead is everything but the fit and the answers themselves — timing, latency,
consistency, and what the run does outside the candidates (loading, splitting, storing,
summarising) — as a share of the run's wall time. Goal (issue 22): at most 10%.

    python bench/eval_overhead.py [--rows N]

``--rows`` keeps a random N rows of the set (seed 0; all by default). Prints the split per
candidate and the overhead share.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "german_intents"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="keep a random N rows (0: all)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from adaptlab import Project, run_project
    from adaptlab.engine.scaffold import init_project
    from adaptlab.store import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "german.csv"
        head, *rows = (SHARED / "train.csv").read_text(encoding="utf-8").splitlines(True)
        if args.rows:  # a random subsample (the file is grouped by label)
            rows = random.Random(0).sample(rows, args.rows)
        data.write_text(head + "".join(rows), "utf-8")
        root = init_project(Path(tmp) / "project", data=data)
        start = time.perf_counter()
        run_project(Project.load(root))
        wall = time.perf_counter() - start
        with RunStore(root / ".adaptlab" / "runs.db") as store:
            run = store.latest_run()
            assert run is not None
            split = json.loads(run["split_json"])
            links = store.run_candidates(run["id"])
            stages = {
                link["name"]: store.result(link["result_key"]).info["seconds"] for link in links
            }
        print(f"split: {split}")
        stage_names = ["fit", "answers", "val", "timing", "latency", "consistency"]
        print(f"{'candidate':<14}" + "".join(f"{s:>12}" for s in stage_names))
        for name, sec in stages.items():
            print(f"{name:<14}" + "".join(f"{sec.get(s, 0.0):>11.1f}s" for s in stage_names))
        work = sum(sec.get(s, 0.0) for sec in stages.values() for s in ("fit", "answers", "val"))
        measured = sum(sec.get(s, 0.0) for sec in stages.values() for s in ("timing", "latency"))
        rest = wall - sum(sum(sec.values()) for sec in stages.values())
        overhead = wall - work
        print(
            f"run wall {wall:.0f} s: fit and answers {work:.0f} s, timing and latency "
            f"{measured:.0f} s, outside the candidates {rest:.0f} s; overhead "
            f"{overhead:.0f} s = {100 * overhead / wall:.1f}% of the run (goal <= 10%)"
        )


if __name__ == "__main__":
    main()
