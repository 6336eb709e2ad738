"""The store's API on SQLite and PostgreSQL alike: one schema, the same answers."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adaptlab.store import MIGRATIONS, PredictionRow, ResultRow, RunStore
from adaptlab.store.db import integrity_errors, is_url
from adaptlab.store.sqlite import lock_id

RESULT = ResultRow("k1", "c", "zero-shot", {"k": 3}, 1.5, 1.25, 0.5, 0.25, 2, True, {"n": [1]})


def _pred(i: int, **kw: object) -> PredictionRow:
    base: dict[str, object] = dict(
        example_id=f"f:{i}",
        input=f"x{i} – ü 100%",
        gold="a",
        predicted="a",
        score=1.0,
        latency_ms=None,
    )
    return PredictionRow(**{**base, **kw})  # type: ignore[arg-type]


def test_migrations_are_numbered_and_recorded(store_target: str | Path) -> None:
    with RunStore(store_target) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.dialect == ("postgresql" if is_url(store_target) else "sqlite")
    with RunStore(store_target) as store:  # reopening applies nothing twice
        rows = store.conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows.fetchall()] == list(range(1, len(MIGRATIONS) + 1))


def test_a_failed_write_leaves_nothing(store_target: str | Path) -> None:
    rows = [_pred(1), _pred(2)]
    with RunStore(store_target) as store:
        bad = [*rows, _pred(3, gold=None)]  # gold is NOT NULL: fails after two rows
        with pytest.raises(integrity_errors()):
            store.save_result(RESULT, bad, [])
        assert not store.has_result("k1")
        assert store.conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
        store.save_result(RESULT, rows, [(1, 0.5, "train", "loss", 0.3)])
        assert store.has_result("k1")
        assert store.predictions("k1") == rows
        assert store.curves("k1") == [(1, 0.5, "train", "loss", 0.3)]


def test_values_round_trip_exactly(store_target: str | Path) -> None:
    """Floats keep all 53 bits, integers all 64 (PostgreSQL's REAL and INTEGER would
    not), text keeps its bytes; None stays None."""
    preds = [
        _pred(0, score=0.1 + 0.2, latency_ms=1e-300, input_tokens=2**62, usage_exact=True),
        _pred(1, predicted=None, score=None, raw="{\"a\": '?'}", status="invalid"),
    ]
    with RunStore(store_target) as store:
        curve = [(2**40, 1 / 3, "val", "f1", 2.5e-17)]
        store.save_result(RESULT, preds, curve, [(0, 1, "a", "ok")])
        assert store.result("k1") == RESULT
        got = store.predictions("k1")
        assert got[0].score == 0.1 + 0.2 and got[0].latency_ms == 1e-300
        assert got[0].input_tokens == 2**62 and got[0].usage_exact == 1
        assert got[1] == preds[1]
        assert store.curves("k1") == curve
        assert store.consistency("k1") == [(0, 1, "a", "ok")]
        store.save_cv("k1", [_pred(5)], {"k": 5})
        assert store.result("k1").info["cv"] == {"k": 5}
        assert [p.example_id for p in store.predictions("k1", "cv")] == ["f:5"]


def test_rows_read_by_name_and_position(store_target: str | Path) -> None:
    with RunStore(store_target) as store:
        store.start_run(
            "r1",
            project="p",
            config={},
            data_fingerprint="d",
            seed=2**32 - 1,
            model={},
            split={"train": 1},
        )
        row = store.run("r1")
        assert row is not None
        assert row["id"] == "r1" == row[0] and row["seed"] == 2**32 - 1
        assert "notes_json" in list(row.keys())


def test_runs_of_one_second_keep_their_order(store_target: str | Path) -> None:
    with RunStore(store_target) as store:
        for run_id in ("zz", "aa", "mm"):  # ids sort otherwise than they were started
            store.start_run(
                run_id, project="p", config={}, data_fingerprint="d", seed=1, model={}, split={}
            )
            store.finish_run(run_id)
        assert [r["id"] for r in store.runs()] == ["mm", "aa", "zz"]
        latest = store.latest_run()
        assert latest is not None and latest["id"] == "mm"


def test_upserts_replace(store_target: str | Path) -> None:
    with RunStore(store_target) as store:
        store.start_run(
            "r", project="p", config={}, data_fingerprint="d", seed=1, model={}, split={}
        )
        store.link("r", 0, "c", "k1", reused=False)
        store.link("r", 1, "c", "k2", reused=True)
        assert [tuple(r) for r in store.run_candidates("r")] == [("r", 1, "c", "k2", 1)]
        store.save_result(RESULT, [_pred(0)], [])
        store.save_result(ResultRow(**{**RESULT.__dict__, "key": "k2"}), [_pred(0)], [])
        store.add_curve_point("s", "c", 10, 0, "k1")
        store.add_curve_point("s", "c", 10, 0, "k2")
        assert store.curve_points("s") == [("c", 10, 0, "k2")]
        store.save_result(RESULT, [_pred(0), _pred(1)], [])  # a result saved again
        assert len(store.predictions("k1")) == 2


def test_a_run_killed_is_marked_interrupted_a_live_one_is_not(store_target: str | Path) -> None:
    """SQLite: under the project's run lock every running run is dead. PostgreSQL: only
    one whose process (session) is gone; another user's live run is left running."""
    alive = RunStore(store_target)
    alive.start_run(
        "live", project="p", config={}, data_fingerprint="d", seed=1, model={}, split={}
    )
    dead = RunStore(store_target)
    dead.start_run("dead", project="p", config={}, data_fingerprint="d", seed=1, model={}, split={})
    dead.close()  # its process ended without finish_run
    with RunStore(store_target) as store:
        marked = store.mark_interrupted()
        status = {r["id"]: r["status"] for r in store.runs()}
    alive.close()
    if store.dialect == "postgresql":
        assert (marked, status) == (1, {"live": "running", "dead": "interrupted"})
    else:
        assert (marked, status) == (2, {"live": "interrupted", "dead": "interrupted"})


def test_a_claimed_result_waits_for_its_claimer(pg_url: str) -> None:
    """The second claimer waits, is told on whom, and gets the claim once it is free;
    a claimer whose session dies (kill -9 closes its connection) frees it."""
    first, second = RunStore(pg_url), RunStore(pg_url)
    waited: list[str] = []
    got = threading.Event()

    def claim_second() -> None:
        with second.claim("k1", waited.append):
            got.set()

    with first.claim("k1"):
        t = threading.Thread(target=claim_second)
        t.start()
        time.sleep(0.6)
        assert not got.is_set()
        assert len(waited) == 1 and "adaptlab pid" in waited[0]
    t.join(5)
    assert got.is_set()
    third = RunStore(pg_url)
    with second.claim("k2"):
        second.conn.raw.close()  # the session ends as when its process is killed
        with third.claim("k2"):
            pass
    for s in (first, second, third):
        s.close()


def test_a_claimer_killed_with_sigkill_frees_its_claim(pg_url: str) -> None:
    code = (
        "import sys, time; from adaptlab.store import RunStore\n"
        "store = RunStore(sys.argv[1])\n"
        "with store.claim('k1'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    waited: list[str] = []
    with RunStore(pg_url) as store:
        assert not store._try_lock(lock_id("result", "k1"))  # held by the child
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        with store.claim("k1", waited.append):
            pass
    assert time.monotonic() - started < 10


def test_claims_do_nothing_on_sqlite(tmp_path: Path) -> None:
    with RunStore(tmp_path / "a.db") as a, a.claim("k"), a.claim("k"):
        pass


def test_concurrent_migrations_on_postgresql(pg_url: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            RunStore(pg_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with RunStore(pg_url) as store:
        rows = store.conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows.fetchall()] == list(range(1, len(MIGRATIONS) + 1))
