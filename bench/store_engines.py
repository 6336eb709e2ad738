"""The run store on both engines: save and read back one evaluated candidate.

One result of a candidate evaluated on a 700-example test split and a 700-example
validation split (1,400 prediction rows, each with raw answer, status and tokens) is
saved (one transaction) and read back (both splits), ``--repeats`` times on each
engine, in the same run: the SQLite file adaptlab uses by default, and PostgreSQL
(the bundled ``pgserver`` in a temporary folder, or ``--url``). Prints the median
seconds and the PostgreSQL/SQLite ratio, and checks every row reads back equal.

This measured the store's design choice (issue 24): a thin layer over sqlite3 and
psycopg 3 with one set of numbered migrations, rather than SQLAlchemy Core (not a
dependency; the store's ~40 statements need only placeholders, types and upserts
translated). Usage::

    python bench/store_engines.py [--url postgresql://USER@HOST:PORT/DB] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from adaptlab.store import PredictionRow, ResultRow, RunStore


def bench(target: Path | str, n: int, repeats: int) -> tuple[float, float]:
    """Median (save seconds, read seconds) of ``repeats`` results of ``n`` test and ``n``
    validation predictions on the store at ``target``; raises AssertionError when a
    row does not read back equal."""
    preds = [
        PredictionRow(
            f"f:{i}",
            f"ticket text number {i} " * 8,
            "billing",
            "billing",
            1.0,
            12.5,
            raw='{"label": "billing"}',
            status="constrained",
            input_tokens=120,
            output_tokens=5,
        )
        for i in range(n)
    ]
    saves, reads = [], []
    with RunStore(target) as store:
        for r in range(repeats):
            key = f"bench-{r}-{time.time_ns()}"
            result = ResultRow(key, "c", "llm-zero-shot", {}, 1, 1, 1, 1, n, False, {})
            t = time.perf_counter()
            store.save_result(result, preds, [], val_predictions=preds)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = store.predictions(key)
            got_val = store.predictions(key, "val")
            reads.append(time.perf_counter() - t)
            assert got == preds and got_val == preds, "a prediction did not read back equal"
    return statistics.median(saves), statistics.median(reads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a PostgreSQL URL (default: the bundled pgserver)")
    ap.add_argument("--n", type=int, default=700, help="predictions per split")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url
        if url is None:
            from adaptlab.rag.pgvector import local_server, stop_local_server

            url = local_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            lite = bench(Path(tmp) / "runs.db", args.n, args.repeats)
            pg = bench(url, args.n, args.repeats)
        finally:
            if args.url is None:
                stop_local_server(Path(tmp) / "pg")
    print(f"{args.n} test + {args.n} val predictions, median of {args.repeats}")
    print(f"sqlite      save {lite[0]:.3f} s   read {lite[1]:.3f} s")
    print(f"postgresql  save {pg[0]:.3f} s   read {pg[1]:.3f} s")
    print(f"ratio pg/sqlite: save {pg[0] / lite[0]:.1f}x   read {pg[1] / lite[1]:.1f}x")


if __name__ == "__main__":
    main()
