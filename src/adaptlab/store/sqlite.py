"""The run store: one SQLite file in the project folder, or a PostgreSQL database
shared by several users and machines; the same numbered migrations on both.

Every prediction is a row, so a report is rebuilt from the store without running
anything again. A candidate's result is keyed by a hash of everything that
determines it (its options, the model, the labels, the data split, the seed), so
an unchanged candidate is never recomputed, and a result is written in one
transaction: a killed run leaves either the whole candidate or nothing.

On PostgreSQL (``RunStore("postgresql://…")``) several processes on several
machines share the store: a result is claimed before it is computed
(:meth:`RunStore.claim`, a session-level advisory lock that dies with its process),
so each is computed once, and a run holds a lock of its own while it lives, so
:meth:`RunStore.mark_interrupted` marks only runs whose process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adaptlab.store.db import PgConnection, ddl_to_postgresql, display, is_url
from adaptlab.store.files import StoreError, connect, enable_wal
from adaptlab.store.schema import MIGRATIONS, statements

__all__ = ["MIGRATIONS", "ConsistencyRow", "PredictionRow", "ResultRow", "RunStore"]

#: Seconds between two looks at a result another process has claimed.
CLAIM_POLL_S = 0.25

_PRED_COLUMNS = (
    "result_key, split, idx, example_id, input, gold, predicted, score, latency_ms, raw, status, "
    "input_tokens, output_tokens, cached_tokens, finish_reason, usage_exact, context_json, "
    "sources_json"
)
_PRED_MARKS = ", ".join("?" * len(_PRED_COLUMNS.split(", ")))


def _pred_values(key: str, split: str, idx: int, p: PredictionRow) -> tuple[Any, ...]:
    """One predictions row in the order of ``_PRED_COLUMNS``."""
    return (
        key,
        split,
        idx,
        p.example_id,
        p.input,
        p.gold,
        p.predicted,
        p.score,
        p.latency_ms,
        p.raw,
        p.status,
        p.input_tokens,
        p.output_tokens,
        p.cached_tokens,
        p.finish_reason,
        None if p.usage_exact is None else int(p.usage_exact),
        p.context_json,
        p.sources_json,
    )


def _damaged_fix(path: Path) -> str:
    return (
        f"move it away (mv {path} {path}.broken) and run again: a new store is created; "
        "stored results are lost, but answers in llm_cache.db are not paid for again"
    )


def lock_id(kind: str, name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for ``name`` of ``kind``
    ("result", "run", "migrate"): the first 8 bytes of a SHA-256 of both."""
    digest = hashlib.sha256(f"adaptlab:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_MIGRATE_LOCK = lock_id("migrate", "schema")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class PredictionRow:
    example_id: str
    input: str
    gold: str
    predicted: str | None
    score: float | None
    latency_ms: float | None
    raw: str | None = None
    status: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None  # the provider's: stop, length, content_filter, …
    usage_exact: bool | None = None  # False: token counts estimated or repaired
    #: JSON list of the passages put into the prompt, in prompt order (see
    #: :class:`adaptlab.rag.context.Passage`); None for a closed-book candidate.
    context_json: str | None = None
    #: JSON list of the document ids that support the reference (data.sources_field).
    sources_json: str | None = None


ConsistencyRow = tuple[int, int, str | None, str | None]  # (idx, sample, predicted, status)


@dataclass(frozen=True)
class ResultRow:
    key: str
    candidate: str
    strategy: str
    params: dict[str, Any]
    fit_seconds: float
    fit_cpu_seconds: float
    predict_seconds: float
    predict_cpu_seconds: float
    n_predictions: int
    trains_weights: bool
    info: dict[str, Any]


class RunStore:
    """Access to the run store at ``target``; migrates on open.

    ``target``: the SQLite file (a path, normally ``.adaptlab/runs.db``) or a
    ``postgresql://`` URL (libpq's: PGPASSWORD, ~/.pgpass and the other PG* variables
    apply). ``display`` is the target as it may be shown (a URL without its password);
    ``dialect`` is "sqlite" or "postgresql"; ``conn`` is the connection
    (:func:`adaptlab.store.db.open_connection` says what it offers on each).

    A file that is not a database, is damaged, locked or on a read-only disk, a server
    that cannot be reached, refuses the login or lacks the database, or a store a newer
    adaptlab wrote, stops with a :class:`StoreError` naming it and the fix; a newer
    schema is refused before anything is written to it.
    """

    def __init__(self, target: str | Path) -> None:
        self.dialect = "postgresql" if is_url(target) else "sqlite"
        self.display = display(target)
        self.conn: Any
        #: Where the store is, for messages (``file=``): the SQLite file, or on PostgreSQL
        #: the URL without its password (text: a Path would fold its '//').
        self.path: Path | str
        if self.dialect == "postgresql":
            self.path = self.display
            self.conn = PgConnection(str(target))
        else:
            self.path = Path(target)
            self.conn = connect(self.path, damaged_fix=_damaged_fix(self.path))
        self._run_locks: dict[str, int] = {}
        try:
            if self.dialect == "sqlite":
                self.conn.row_factory = sqlite3.Row
                self._refuse_newer()
                self.conn.execute("PRAGMA foreign_keys = ON")
                enable_wal(self.conn)
            else:
                self._refuse_newer()
            self.migrate()
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- schema

    def _applied(self) -> set[int]:
        if self.dialect == "postgresql":
            has_table = self.conn.execute(
                "SELECT to_regclass('schema_migrations') IS NOT NULL"
            ).fetchone()[0]
        else:
            has_table = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
        if not has_table:
            return set()
        return {int(r[0]) for r in self.conn.execute("SELECT version FROM schema_migrations")}

    def _newer(self, newest: int, what: str) -> StoreError:
        return StoreError(
            f"{what} (store schema version {newest}; this adaptlab knows versions up to "
            f"{len(MIGRATIONS)}); it was not changed",
            file=self.path,
            fix="upgrade adaptlab (pip install -U adaptlab) to use this project",
            code="newer-schema",
        )

    def _refuse_newer(self) -> None:
        # Read only: a store from a newer adaptlab is never written to, not even its journal mode.
        newest = max(self._applied(), default=0)
        if newest > len(MIGRATIONS):
            raise self._newer(newest, "written by a newer adaptlab")

    def migrate(self) -> None:
        """Apply the migrations this store lacks. Safe when several processes open a new
        store at once: SQLite's write lock, or on PostgreSQL an advisory lock held by
        each migration's transaction, lets one migrate and the others find it done."""
        if set(range(1, len(MIGRATIONS) + 1)) <= self._applied():
            return
        if self.dialect == "postgresql":
            self._migrate_postgresql()
            return
        # IMMEDIATE takes the write lock before reading what is applied, so two processes
        # opening a fresh store migrate one after the other: the second finds nothing to do.
        with self.transaction(immediate=True):
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = self._applied()
            if max(done, default=0) > len(MIGRATIONS):  # a newer adaptlab won the race
                raise self._newer(max(done), "just migrated by a newer adaptlab")
            for version, (name, sql) in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                for statement in statements(sql, "sqlite"):
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now())
                )

    def _migrate_postgresql(self) -> None:
        # Each migration is one transaction (PostgreSQL's DDL is transactional), taken
        # under an advisory lock that its COMMIT releases.
        for version, (name, sql) in enumerate(MIGRATIONS, start=1):
            with self.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                done = self._applied()
                if max(done, default=0) > len(MIGRATIONS):
                    raise self._newer(max(done), "just migrated by a newer adaptlab")
                if version in done:
                    continue
                for statement in statements(sql, "postgresql"):
                    self.conn.execute(ddl_to_postgresql(statement))
                self.conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now())
                )

    @property
    def schema_version(self) -> int:
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Any]:
        """One transaction on ``conn`` (yielded): committed at the end of the block,
        rolled back if it raises. ``immediate``: on SQLite, take the write lock at once."""
        if self.dialect == "postgresql":
            with self.conn.transaction() as conn:
                yield conn
            return
        # An explicit BEGIN: sqlite3's implicit transactions do not cover DDL.
        self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT or a full disk may have ended it
                with contextlib.suppress(sqlite3.Error, StoreError):
                    self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---------------------------------------------------------------- claims

    @contextmanager
    def claim(self, key: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold result ``key`` for this process while the block computes it.

        On PostgreSQL a session-level advisory lock on a hash of the key: a second
        process claiming the same key waits (``on_wait(holder)`` once, ``holder`` as
        "adaptlab pid 123 on host"), then finds the result stored and reuses it. The
        lock ends with its session, so a claimer killed with ``kill -9`` releases it
        (the server sees the connection close). On SQLite this does nothing: the
        project's run lock (:mod:`adaptlab.store.lock`) already serialises runs.
        Ctrl-C interrupts the wait.
        """
        if self.dialect != "postgresql":
            yield
            return
        lock = lock_id("result", key)
        if not self._try_lock(lock):
            if on_wait is not None:
                on_wait(self._holder(lock))
            while not self._try_lock(lock):
                time.sleep(CLAIM_POLL_S)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a lost connection released it already
                self.conn.execute("SELECT pg_advisory_unlock(?)", (lock,))

    def _try_lock(self, lock: int) -> bool:
        return bool(self.conn.execute("SELECT pg_try_advisory_lock(?)", (lock,)).fetchone()[0])

    def _holder(self, lock: int) -> str:
        """Who holds advisory lock ``lock``, as its connection named itself."""
        # pg_locks shows a bigint advisory key as (classid, objid) = (high, low) 32 bits.
        high, low = (lock >> 32) & 0xFFFFFFFF, lock & 0xFFFFFFFF
        row = self.conn.execute(
            "SELECT a.application_name, a.client_addr::text FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid::bigint = ? AND l.objid::bigint = ? "
            "AND l.objsubid = 1 LIMIT 1",
            (high, low),
        ).fetchone()
        if row is None:
            return "another adaptlab process"
        name, addr = row[0] or "another adaptlab process", row[1]
        return f"{name} (from {addr})" if addr else name

    # ---------------------------------------------------------------- runs

    def start_run(
        self,
        run_id: str,
        *,
        project: str,
        config: dict[str, Any],
        data_fingerprint: str,
        seed: int,
        model: dict[str, Any],
        split: dict[str, int],
        notes: dict[str, Any] | None = None,
    ) -> None:
        """Record run ``run_id`` as ``running``. On PostgreSQL the run also takes a lock
        of its own, held until :meth:`finish_run` or its process ends, which is how
        :meth:`mark_interrupted` on another machine tells a live run from a dead one."""
        if self.dialect == "postgresql":
            lock = lock_id("run", run_id)
            self.conn.execute("SELECT pg_advisory_lock(?)", (lock,))
            self._run_locks[run_id] = lock
        with self.transaction() as c:
            # The order of runs of one second (rowid would do on SQLite only); two runs
            # starting at once on PostgreSQL may share a number: then their ids order them.
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            c.execute(
                "INSERT INTO runs (id, project, created_at, status, config_json, "
                "data_fingerprint, seed, model_json, split_json, notes_json, seq) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    project,
                    _now(),
                    "running",
                    json.dumps(config),
                    data_fingerprint,
                    seed,
                    json.dumps(model),
                    json.dumps(split),
                    json.dumps(notes or {}),
                    seq,
                ),
            )

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, _now(), run_id)
            )
        lock = self._run_locks.pop(run_id, None)
        if lock is not None:
            with contextlib.suppress(Exception):  # a lost connection released it already
                self.conn.execute("SELECT pg_advisory_unlock(?)", (lock,))

    def mark_interrupted(self) -> int:
        """Mark every run still ``running`` whose process is gone as ``interrupted``; the
        count.

        SQLite: only call this while holding the project's run lock: then no run is
        alive, and a ``running`` row is one whose process was killed before it could
        say so. PostgreSQL: a run whose lock (see :meth:`start_run`) can be taken is
        dead; runs of other users and machines that are still going are left alone.
        """
        if self.dialect == "sqlite":
            with self.transaction() as c:
                cur = c.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ? "
                    "WHERE status = 'running'",
                    (_now(),),
                )
            return int(cur.rowcount)
        marked = 0
        running = self.conn.execute("SELECT id FROM runs WHERE status = 'running'").fetchall()
        for (run_id,) in running:
            if run_id in self._run_locks:  # this process's own run
                continue
            lock = lock_id("run", run_id)
            if not self._try_lock(lock):
                continue
            try:
                with self.transaction() as c:
                    cur = c.execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ? "
                        "WHERE id = ? AND status = 'running'",
                        (_now(), run_id),
                    )
                marked += int(cur.rowcount)
            finally:
                self.conn.execute("SELECT pg_advisory_unlock(?)", (lock,))
        return marked

    def latest_run(self, *, finished_only: bool = True) -> sqlite3.Row | None:
        where = "WHERE status = 'finished'" if finished_only else ""
        row: sqlite3.Row | None = self.conn.execute(
            f"SELECT * FROM runs {where} ORDER BY created_at DESC, seq DESC, id DESC LIMIT 1"
        ).fetchone()
        return row

    def runs(self) -> list[sqlite3.Row]:
        """Every run of the store, whatever its status, newest first (the order of
        :meth:`latest_run`: creation time, then insertion for runs of the same second)."""
        return list(
            self.conn.execute("SELECT * FROM runs ORDER BY created_at DESC, seq DESC, id DESC")
        )

    def run(self, run_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return row

    def run_candidates(self, run_id: str) -> list[sqlite3.Row]:
        return list(
            self.conn.execute(
                "SELECT * FROM run_candidates WHERE run_id = ? ORDER BY position", (run_id,)
            )
        )

    def link(self, run_id: str, position: int, name: str, key: str, reused: bool) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO run_candidates (run_id, position, name, result_key, reused) "
                "VALUES (?,?,?,?,?) ON CONFLICT (run_id, name) DO UPDATE SET "
                "position = excluded.position, result_key = excluded.result_key, "
                "reused = excluded.reused",
                (run_id, position, name, key, int(reused)),
            )

    # ---------------------------------------------------------------- results

    def has_result(self, key: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is not None
        )

    def save_result(
        self,
        result: ResultRow,
        predictions: Sequence[PredictionRow],
        curves: Sequence[tuple[int, float, str, str, float]],
        consistency: Sequence[ConsistencyRow] = (),
        val_predictions: Sequence[PredictionRow] = (),
    ) -> None:
        """Write a candidate's result, predictions and curves in one transaction.

        ``predictions`` are the test split's answers, ``val_predictions`` the
        validation split's (what candidates are compared and chosen on).
        """
        with self.transaction() as c:
            c.execute("DELETE FROM consistency WHERE result_key = ?", (result.key,))
            c.execute("DELETE FROM curves WHERE result_key = ?", (result.key,))
            c.execute("DELETE FROM predictions WHERE result_key = ?", (result.key,))
            c.execute("DELETE FROM results WHERE key = ?", (result.key,))
            c.execute(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    result.key,
                    result.candidate,
                    result.strategy,
                    json.dumps(result.params),
                    _now(),
                    result.fit_seconds,
                    result.fit_cpu_seconds,
                    result.predict_seconds,
                    result.predict_cpu_seconds,
                    result.n_predictions,
                    int(result.trains_weights),
                    json.dumps(result.info, default=str),
                ),
            )
            c.executemany(
                f"INSERT INTO predictions ({_PRED_COLUMNS}) VALUES ({_PRED_MARKS})",
                [
                    _pred_values(result.key, split, i, p)
                    for split, rows in (("test", predictions), ("val", val_predictions))
                    for i, p in enumerate(rows)
                ],
            )
            c.executemany(
                "INSERT INTO curves VALUES (?,?,?,?,?,?)", [(result.key, *pt) for pt in curves]
            )
            c.executemany(
                "INSERT INTO consistency VALUES (?,?,?,?,?)",
                [(result.key, *row) for row in consistency],
            )

    def save_cv(self, key: str, predictions: Sequence[PredictionRow], cv: dict[str, Any]) -> None:
        """Store a result's cross-validation in one transaction, replacing any before.

        ``predictions`` are the out-of-fold answers in train+val order (split 'cv', idx
        = position in train followed by val); ``cv`` describes the folds (k, seed, each
        example's fold, per-fold seconds) and is kept as ``info["cv"]`` of the result.
        The result itself (its key, test and val answers) is unchanged. Raises KeyError
        when no result has ``key``.
        """
        with self.transaction() as c:
            row = c.execute("SELECT info_json FROM results WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(key)
            info = json.loads(row[0])
            info["cv"] = cv
            c.execute("DELETE FROM predictions WHERE result_key = ? AND split = 'cv'", (key,))
            c.execute(
                "UPDATE results SET info_json = ? WHERE key = ?",
                (json.dumps(info, default=str), key),
            )
            c.executemany(
                f"INSERT INTO predictions ({_PRED_COLUMNS}) VALUES ({_PRED_MARKS})",
                [_pred_values(key, "cv", i, p) for i, p in enumerate(predictions)],
            )

    def result(self, key: str) -> ResultRow:
        r = self.conn.execute("SELECT * FROM results WHERE key = ?", (key,)).fetchone()
        if r is None:
            raise KeyError(key)
        return ResultRow(
            key=r["key"],
            candidate=r["candidate"],
            strategy=r["strategy"],
            params=json.loads(r["params_json"]),
            fit_seconds=r["fit_seconds"],
            fit_cpu_seconds=r["fit_cpu_seconds"],
            predict_seconds=r["predict_seconds"],
            predict_cpu_seconds=r["predict_cpu_seconds"],
            n_predictions=r["n_predictions"],
            trains_weights=bool(r["trains_weights"]),
            info=json.loads(r["info_json"]),
        )

    def predictions(self, key: str, split: str = "test") -> list[PredictionRow]:
        """A result's answers on ``split`` in example order: 'test', 'val', or 'cv' (the
        out-of-fold answers over train+val, see :meth:`save_cv`; empty when none)."""
        columns = _PRED_COLUMNS.split(", ", 3)[3]
        rows = self.conn.execute(
            f"SELECT {columns} FROM predictions WHERE result_key = ? AND split = ? ORDER BY idx",
            (key, split),
        )
        return [PredictionRow(*r) for r in rows]

    def add_curve_point(
        self, split_fingerprint: str, candidate: str, size: int, draw: int, key: str
    ) -> None:
        """Record that result ``key`` is ``candidate`` trained on ``size`` examples (draw)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO curve_points (split_fingerprint, candidate, size, draw, result_key) "
                "VALUES (?,?,?,?,?) ON CONFLICT (split_fingerprint, candidate, size, draw) "
                "DO UPDATE SET result_key = excluded.result_key",
                (split_fingerprint, candidate, size, draw, key),
            )

    def curve_points(self, split_fingerprint: str) -> list[tuple[str, int, int, str]]:
        """(candidate, size, draw, result key) of a split's learning curves, by candidate."""
        rows = self.conn.execute(
            "SELECT candidate, size, draw, result_key FROM curve_points "
            "WHERE split_fingerprint = ? ORDER BY candidate, size, draw",
            (split_fingerprint,),
        )
        return [tuple(r) for r in rows]

    def consistency(self, key: str) -> list[ConsistencyRow]:
        rows = self.conn.execute(
            "SELECT idx, sample, predicted, status FROM consistency WHERE result_key = ? "
            "ORDER BY idx, sample",
            (key,),
        )
        return [tuple(r) for r in rows]

    def curves(self, key: str) -> list[tuple[int, float, str, str, float]]:
        rows = self.conn.execute(
            "SELECT step, epoch, split, metric, value FROM curves WHERE result_key = ? "
            "ORDER BY step, split, metric",
            (key,),
        )
        return [tuple(r) for r in rows]
