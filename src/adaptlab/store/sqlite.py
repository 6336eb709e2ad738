"""The run store: one SQLite file in the project folder, with numbered migrations.

Every prediction is a row, so a report is rebuilt from the store without running
anything again. A candidate's result is keyed by a hash of everything that
determines it (its options, the model, the labels, the data split, the seed), so
an unchanged candidate is never recomputed, and a result is written in one
transaction: a killed run leaves either the whole candidate or nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adaptlab.store.files import StoreError, connect, enable_wal

MIGRATIONS: list[tuple[str, str]] = [
    (
        "initial schema",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            config_json TEXT NOT NULL,
            data_fingerprint TEXT NOT NULL,
            seed INTEGER NOT NULL,
            model_json TEXT NOT NULL,
            split_json TEXT NOT NULL
        );
        CREATE TABLE results (
            key TEXT PRIMARY KEY,
            candidate TEXT NOT NULL,
            strategy TEXT NOT NULL,
            params_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            fit_seconds REAL NOT NULL,
            fit_cpu_seconds REAL NOT NULL,
            predict_seconds REAL NOT NULL,
            predict_cpu_seconds REAL NOT NULL,
            n_predictions INTEGER NOT NULL,
            trains_weights INTEGER NOT NULL,
            info_json TEXT NOT NULL
        );
        CREATE TABLE run_candidates (
            run_id TEXT NOT NULL REFERENCES runs(id),
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            result_key TEXT NOT NULL,
            reused INTEGER NOT NULL,
            PRIMARY KEY (run_id, name)
        );
        CREATE TABLE predictions (
            result_key TEXT NOT NULL REFERENCES results(key),
            idx INTEGER NOT NULL,
            example_id TEXT NOT NULL,
            input TEXT NOT NULL,
            gold TEXT NOT NULL,
            predicted TEXT,
            score REAL,
            latency_ms REAL,
            PRIMARY KEY (result_key, idx)
        );
        CREATE TABLE curves (
            result_key TEXT NOT NULL REFERENCES results(key),
            step INTEGER NOT NULL,
            epoch REAL NOT NULL,
            split TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL NOT NULL
        );
        CREATE INDEX curves_key ON curves(result_key);
        """,
    ),
    (
        "generative answers: raw text, parse status, tokens; consistency samples",
        """
        ALTER TABLE predictions ADD COLUMN raw TEXT;
        ALTER TABLE predictions ADD COLUMN status TEXT;
        ALTER TABLE predictions ADD COLUMN input_tokens INTEGER;
        ALTER TABLE predictions ADD COLUMN output_tokens INTEGER;
        ALTER TABLE predictions ADD COLUMN cached_tokens INTEGER;
        CREATE TABLE consistency (
            result_key TEXT NOT NULL REFERENCES results(key),
            idx INTEGER NOT NULL,
            sample INTEGER NOT NULL,
            predicted TEXT,
            status TEXT,
            PRIMARY KEY (result_key, idx, sample)
        );
        """,
    ),
    (
        "run notes: candidates that could not run and why",
        """
        ALTER TABLE runs ADD COLUMN notes_json TEXT;
        """,
    ),
    (
        "generative answers: finish reason and whether the token counts are exact",
        """
        ALTER TABLE predictions ADD COLUMN finish_reason TEXT;
        ALTER TABLE predictions ADD COLUMN usage_exact INTEGER;
        """,
    ),
    (
        "retrieval: the passages a prompt held, and the documents the reference cites",
        """
        ALTER TABLE predictions ADD COLUMN context_json TEXT;
        ALTER TABLE predictions ADD COLUMN sources_json TEXT;
        """,
    ),
    (
        "validation answers beside test answers: predictions keyed by split",
        """
        CREATE TABLE predictions_by_split (
            result_key TEXT NOT NULL REFERENCES results(key),
            split TEXT NOT NULL,
            idx INTEGER NOT NULL,
            example_id TEXT NOT NULL,
            input TEXT NOT NULL,
            gold TEXT NOT NULL,
            predicted TEXT,
            score REAL,
            latency_ms REAL,
            raw TEXT,
            status TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cached_tokens INTEGER,
            finish_reason TEXT,
            usage_exact INTEGER,
            context_json TEXT,
            sources_json TEXT,
            PRIMARY KEY (result_key, split, idx)
        );
        INSERT INTO predictions_by_split
            SELECT result_key, 'test', idx, example_id, input, gold, predicted, score,
                   latency_ms, raw, status, input_tokens, output_tokens, cached_tokens,
                   finish_reason, usage_exact, context_json, sources_json
            FROM predictions;
        DROP TABLE predictions;
        ALTER TABLE predictions_by_split RENAME TO predictions;
        """,
    ),
    (
        "learning curves: which result is which (candidate, train subset size, draw)",
        """
        CREATE TABLE curve_points (
            split_fingerprint TEXT NOT NULL,
            candidate TEXT NOT NULL,
            size INTEGER NOT NULL,
            draw INTEGER NOT NULL,
            result_key TEXT NOT NULL REFERENCES results(key),
            PRIMARY KEY (split_fingerprint, candidate, size, draw)
        );
        """,
    ),
    (
        "serving: API keys (hashed), the request log and feedback on answers",
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            rpm INTEGER,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            route TEXT,
            candidate TEXT,
            shadow_of TEXT,
            user_hash TEXT,
            key_id TEXT,
            input TEXT,
            output TEXT,
            score REAL,
            answer_status TEXT,
            http_status INTEGER NOT NULL,
            latency_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost_usd REAL,
            error TEXT
        );
        CREATE INDEX requests_candidate ON requests(candidate, created_at);
        CREATE INDEX requests_shadow ON requests(shadow_of);
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            label TEXT,
            rating REAL,
            comment TEXT,
            key_id TEXT
        );
        CREATE INDEX feedback_request ON feedback(request_id);
        """,
    ),
]


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
    """Access to ``runs.db``; migrates on open.

    A file that is not a database, is damaged, locked or on a read-only disk, or that a
    newer adaptlab wrote, stops with a :class:`StoreError` naming it and the fix; a
    newer schema is refused before anything is written to the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, damaged_fix=_damaged_fix(self.path))
        try:
            self.conn.row_factory = sqlite3.Row
            self._refuse_newer()
            self.conn.execute("PRAGMA foreign_keys = ON")
            enable_wal(self.conn)
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
        has_table = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if has_table is None:
            return set()
        return {int(r[0]) for r in self.conn.execute("SELECT version FROM schema_migrations")}

    def _refuse_newer(self) -> None:
        # Read only: a store from a newer adaptlab is never written to, not even its journal mode.
        newest = max(self._applied(), default=0)
        if newest > len(MIGRATIONS):
            raise StoreError(
                f"written by a newer adaptlab (store schema version {newest}; "
                f"this adaptlab knows versions up to {len(MIGRATIONS)}); it was not changed",
                file=self.path,
                fix="upgrade adaptlab (pip install -U adaptlab) to use this project",
                code="newer-schema",
            )

    def migrate(self) -> None:
        if set(range(1, len(MIGRATIONS) + 1)) <= self._applied():
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
                raise StoreError(
                    "just migrated by a newer adaptlab",
                    file=self.path,
                    fix="upgrade adaptlab (pip install -U adaptlab) to use this project",
                    code="newer-schema",
                )
            for version, (name, sql) in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now())
                )

    @property
    def schema_version(self) -> int:
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
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
        with self.transaction() as c:
            c.execute(
                "INSERT INTO runs (id, project, created_at, status, config_json, "
                "data_fingerprint, seed, model_json, split_json, notes_json) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                ),
            )

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, _now(), run_id)
            )

    def mark_interrupted(self) -> int:
        """Mark every run still ``running`` as ``interrupted``; the count.

        Only call this while holding the project's run lock: then no run is alive, and a
        ``running`` row is one whose process was killed before it could say so.
        """
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
                (_now(),),
            )
        return cur.rowcount

    def latest_run(self, *, finished_only: bool = True) -> sqlite3.Row | None:
        where = "WHERE status = 'finished'" if finished_only else ""
        row: sqlite3.Row | None = self.conn.execute(
            f"SELECT * FROM runs {where} ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        return row

    def runs(self) -> list[sqlite3.Row]:
        """Every run of the store, whatever its status, newest first (the order of
        :meth:`latest_run`: creation time, then insertion for runs of the same second)."""
        return list(self.conn.execute("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC"))

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
                "INSERT OR REPLACE INTO run_candidates VALUES (?,?,?,?,?)",
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
                "INSERT OR REPLACE INTO curve_points VALUES (?,?,?,?,?)",
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
