"""The request log (background writer, feedback after its request, failures said and
survived) and what it becomes: the exported dataset and the live statistics."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptlab.evaluation.served import export_rows, live_stats
from adaptlab.evaluation.stats import mcnemar
from adaptlab.serve.log import Feedback, RequestLog, RequestRecord, now
from adaptlab.store import RunStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The run store the log is written to and read from: a SQLite file, or a fresh
    PostgreSQL database (the same numbers are asked of both)."""
    if request.param == "sqlite":
        return tmp_path / "runs.db"
    url: str = request.getfixturevalue("pg_url")
    return url


def _reader(store: Path | str, request: pytest.FixtureRequest) -> Any:
    opened = RunStore(store)
    request.addfinalizer(opened.close)
    return opened.conn


def _record(
    rid: str, cand: str, text: str, output: str | None, shadow_of: str | None = None, **kw: Any
) -> RequestRecord:
    fields: dict[str, Any] = dict(
        id=rid, created_at=now(), endpoint="chat", route="default", candidate=cand,
        shadow_of=shadow_of, user_hash=None, key_id="k1", input=text, output=output,
        score=1.0, answer_status=None, http_status=200, latency_ms=10.0,
        input_tokens=None, output_tokens=None, cost_usd=0.001, error=None,
    )  # fmt: skip
    fields.update(kw)
    return RequestRecord(**fields)


def test_feedback_follows_its_request_and_a_failed_write_is_survived(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    log = RequestLog(tmp_path / "runs.db")
    log.record(_record("r1", "a", "hello", "billing"))
    assert log.feedback(Feedback("r1", "refund", None, None, "k1")).result(10) is True
    assert log.feedback(Feedback("nope", "refund", None, None, "k1")).result(10) is False

    calls = 0
    original = RequestLog._write

    def flaky(store: Any, items: list[object], marks: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        original(store, items, marks)

    log._write = flaky  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        log.feedback(Feedback("r1", "billing", None, None, "k1")).result(10)
    # A lock held by another process (adaptlab run saving a result) is waited out.
    calls = -10

    def locked_once(store: Any, items: list[object], marks: str) -> None:
        nonlocal calls
        calls += 1
        if calls == -9:
            raise sqlite3.OperationalError("database is locked")
        original(store, items, marks)

    log._write = locked_once  # type: ignore[method-assign]
    assert log.feedback(Feedback("r1", "account", None, None, "k1")).result(30) is True
    log.record(_record("r2", "a", "again", "shipping"))
    assert log.feedback(Feedback("r2", "shipping", None, None, "k1")).result(10) is True
    log.close()
    conn = sqlite3.connect(tmp_path / "runs.db")
    request.addfinalizer(conn.close)
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 2
    assert conn.execute("SELECT request_id, label FROM feedback ORDER BY id").fetchall() == [
        ("r1", "refund"),
        ("r1", "account"),
        ("r2", "shipping"),
    ]


def test_export_and_stats_computed_by_hand(
    store: Path | str, request: pytest.FixtureRequest
) -> None:
    log = RequestLog(store)
    gold = ["x", "y", "x", "y", "x", "y", "x", "y"]
    a_out = ["x", "y", "x", "x", "x", "y", "y", "y"]  # 6 of 8 right
    b_out = ["x", "x", "y", "x", "x", "y", "y", "x"]  # 3 of 8 right
    for i, (g, a_label, b_label) in enumerate(zip(gold, a_out, b_out, strict=True)):
        text = f"ticket {i}" if i else "mail me at jane.doe@example.com"
        log.record(_record(f"r{i}", "a", text, a_label))
        log.record(_record(f"s{i}", "b", text, b_label, shadow_of=f"r{i}", latency_ms=20.0 + i))
        log.feedback(Feedback(f"r{i}", g, None, None, None))
    log.record(_record("r8", "a", "no feedback", "x"))
    log.record(_record("r9", "a", "failed", None, http_status=500, error="boom"))
    log.feedback(Feedback("r0", "x", 1.0, "good", None)).result(10)
    log.close()
    conn = _reader(store, request)

    out = export_rows(conn, input_field="body", label_field="category")
    assert [r["id"] for r in out.rows] == [f"r{i}" for i in range(8)]
    assert [r["category"] for r in out.rows] == gold and out.rows[1]["body"] == "ticket 1"
    assert out.without_label == 1 and out.failed == 1
    assert out.pii == {"email": 1} and "jane.doe" not in " ".join(out.pii_examples)
    assert out.rows[0]["pii"] == ["email"]
    strict = export_rows(conn, input_field="body", label_field="category", labels={"x"})
    assert strict.unknown_label == {"y": 4} and len(strict.rows) == 4
    kept = export_rows(conn, input_field="body", label_field="category", unlabelled=True)
    assert len(kept.rows) == 9 and "category" not in kept.rows[-1]

    stats, comparisons = live_stats(conn, resamples=200)
    by = {(s.candidate, s.shadow): s for s in stats}
    a, b = by[("a", False)], by[("b", True)]
    assert (a.requests, a.errors, a.labelled) == (10, 1, 8) and (b.requests, b.labelled) == (8, 8)
    assert a.accuracy is not None and a.accuracy.estimate == pytest.approx(6 / 8)
    assert b.accuracy is not None and b.accuracy.estimate == pytest.approx(3 / 8)
    assert a.accuracy.low <= 6 / 8 <= a.accuracy.high
    assert b.latency_p50_ms == pytest.approx(np.percentile([20.0 + i for i in range(8)], 50))
    assert a.cost_usd == pytest.approx(0.009) and a.mean_rating == 1.0 and a.rated == 1
    (cmp,) = comparisons
    want = mcnemar(np.array(a_out) == np.array(gold), np.array(b_out) == np.array(gold))
    assert (cmp.a, cmp.b, cmp.pairs) == ("a", "b", 8)
    assert cmp.test is not None and cmp.test.p_value == pytest.approx(want.p_value)
    assert (cmp.test.a_only, cmp.test.b_only) == (want.a_only, want.b_only)


@pytest.mark.parametrize(
    ("given", "stored_as"),
    [
        ("2026-12-01", "2026-12-01T00:00:00.000+00:00"),
        ("2026-12-01T09:30Z", "2026-12-01T09:30:00.000+00:00"),
        ("2026-12-01T10:30:00+01:00", "2026-12-01T09:30:00.000+00:00"),
        (" 2099-01-01 ", "2099-01-01T00:00:00.000+00:00"),
    ],
)
def test_since_is_read_as_a_time_in_the_logs_own_format(given: str, stored_as: str) -> None:
    from adaptlab.cli.logs import since_option

    assert since_option(given) == stored_as


@pytest.mark.parametrize("given", ["01/01/2099", "yesterday", "2026-13-01", "", "1e9"])
def test_a_since_that_is_no_time_is_refused_not_compared_as_text(
    tmp_path: Path, given: str
) -> None:
    # "01/01/2099" compared as text sorts before every logged time: today's traffic would
    # have been exported under a date in 2099
    from tests.conftest import run_cli

    for command in ("export", "stats"):
        out = run_cli("logs", command, "-p", str(tmp_path), "--since", given)
        assert out.exit_code == 2, out.output
        assert "--since" in out.output and "ISO 8601" in out.output


def test_a_since_in_the_future_exports_nothing(
    store: Path | str, request: pytest.FixtureRequest
) -> None:
    from adaptlab.cli.logs import since_option

    log = RequestLog(store)
    log.record(_record("r0", "a", "today", "x"))
    log.feedback(Feedback("r0", "x", None, None, None)).result(10)
    log.close()
    conn = _reader(store, request)
    every = export_rows(conn, input_field="t", label_field="l")
    assert len(every.rows) == 1
    later = export_rows(conn, input_field="t", label_field="l", since=since_option("2099-01-01"))
    assert later.rows == []
