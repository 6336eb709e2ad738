"""The request log: every served request, its answer and its feedback, in the run store.

One writer thread owns the store's connection and commits in small batches; a request
is answered once its row is committed (``record`` and ``record_many``, for the rows of
one model batch, return a future), so a row that cannot be written fails its request
(503) instead of vanishing. Feedback goes through
the same queue, after the request it refers to. On shutdown the queue is drained.

The store is the project's SQLite file or a PostgreSQL database (``postgresql://``),
which several ``adaptlab serve`` replicas share: each writes its own rows (request ids
are random UUIDs), and feedback sent to any replica finds a request answered by
another, since a request is answered only after its row is committed.

A SQLite file may change under a running server: deleted, replaced (a backup put
back), made read-only, locked by another process. :meth:`RequestLog.problem` says so
without touching SQLite (a ``stat``), :meth:`RequestLog.check` also takes and releases
the write lock; the writer reopens a replaced file and never writes into a deleted one.
A PostgreSQL server may stop or restart: the batch being written fails (its requests
get 503 naming the URL, never its password), the writer connects again for the next
batch, and a connection that died while idle is replaced and the batch written at
once. For :data:`DOWN_S` after a failed connection :meth:`RequestLog.problem` answers
that failure, so requests get their 503 before a model is asked (and paid).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from concurrent.futures import Future
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adaptlab.core.errors import AdaptlabError
from adaptlab.store import RunStore
from adaptlab.store.db import display, is_url, open_connection
from adaptlab.store.files import StoreError, database_error, os_error

log = logging.getLogger("adaptlab.serve")
#: Seconds the writer waits out another process's write lock before failing the rows
#: waiting on it (``adaptlab serve --store-timeout-s``).
LOCK_WAIT_S = 10.0
#: Seconds a failed connection to a PostgreSQL store is the answer of
#: :meth:`RequestLog.problem` before the writer tries to connect again.
DOWN_S = 1.0
#: :class:`StoreError` codes of a PostgreSQL store that cannot be reached (as opposed
#: to one statement that failed).
_UNREACHABLE = ("unreachable", "unavailable", "auth", "no-database", "bad-url")
#: Errors of one row (a value SQLite cannot bind), not of the store: the other rows of
#: the batch are written one by one and only that row fails.
_ROW_ERRORS = (
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    UnicodeError,
    TypeError,
    ValueError,
    OverflowError,
)


def _locked(exc: BaseException) -> bool:
    issue = getattr(exc, "issue", None)
    return getattr(issue, "code", None) == "locked" or "locked" in str(exc).lower()


def storable(value: object, dialect: str = "sqlite") -> object:
    """``value`` as the store can hold it: a string's lone surrogates (text that is not
    Unicode, which UTF-8 cannot hold) become visible ``\\udXXX`` escapes; on PostgreSQL,
    whose text cannot hold NUL, a NUL becomes ``\\x00`` (a model's answer may hold one)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if dialect == "postgresql" and "\x00" in value:
            value = value.replace("\x00", "\\x00")
    return value


def _row_errors(target: Path | str) -> tuple[type[BaseException], ...]:
    """The errors of one row on ``target``'s engine (see ``_ROW_ERRORS``)."""
    if not is_url(target):
        return _ROW_ERRORS
    import psycopg

    return (*_ROW_ERRORS, psycopg.DataError, psycopg.IntegrityError)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


COLUMNS = (
    "id, created_at, endpoint, route, candidate, shadow_of, user_hash, key_id, input, output, "
    "score, answer_status, http_status, latency_ms, input_tokens, output_tokens, cost_usd, error"
)
#: A row written again (a batch retried after its commit's answer was lost) replaces
#: itself: the same statement on SQLite and PostgreSQL.
_UPSERT = (
    f"INSERT INTO requests ({COLUMNS}) VALUES ({', '.join('?' * len(COLUMNS.split(', ')))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
)


@dataclass(frozen=True)
class RequestRecord:
    """One row of ``requests``: a primary answer, or a shadow's (``shadow_of`` set)."""

    id: str
    created_at: str
    endpoint: str
    route: str | None
    candidate: str | None
    shadow_of: str | None
    user_hash: str | None  # SHA-256 prefix of the user id: stickiness without the id
    key_id: str | None  # which key, never the key
    input: str | None
    output: str | None
    score: float | None
    answer_status: str | None
    http_status: int
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    error: str | None


@dataclass(frozen=True)
class Feedback:
    request_id: str
    label: str | None
    rating: float | None
    comment: str | None
    key_id: str | None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def user_hash(user: str | None) -> str | None:
    if not user:
        return None
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class RequestLog:
    """Writes :class:`RequestRecord` and :class:`Feedback` rows from a background thread.

    ``store``: the run store, a SQLite file or a ``postgresql://`` URL (the
    :class:`StoreError` of one that cannot be opened or migrated is raised here, before
    serving). ``lock_wait_s``: how long a write waits out another process's lock on the
    store before its rows fail (with a :class:`StoreError` whose code is ``locked``).
    """

    def __init__(self, store: Path | str, *, lock_wait_s: float = LOCK_WAIT_S) -> None:
        RunStore(store).close()  # migrate (and fail here, clearly) before serving
        self.target = store
        self.postgresql = is_url(store)
        self.display = display(store)  # the store as it may be shown: no password
        self.path = Path("/") if self.postgresql else Path(store)  # SQLite's file
        self.lock_wait_s = lock_wait_s
        self._row_errors = _row_errors(store)
        self._down: tuple[float, StoreError] | None = None  # (when, why) a connection failed
        self._queue: queue.Queue[object] = queue.Queue()
        self._store: Any = None
        self._opened: tuple[int, int] | None = None  # (device, inode) of the open file
        self._thread = threading.Thread(target=self._work, name="adaptlab-request-log")
        self._thread.daemon = True
        self._thread.start()

    def record(self, row: RequestRecord) -> Future[None]:
        """Queue a row; the future is done once it is committed, or fails with why not."""
        done: Future[None] = Future()
        self._queue.put((row, done))
        return done

    def record_many(self, rows: list[RequestRecord]) -> Future[list[BaseException | None]]:
        """Queue ``rows`` as one item (one transaction, unless a row fails alone); the
        future is done once every row is committed or failed: per row, None (committed)
        or why not. One future for a whole model batch: the server is woken once for
        it, not once per row."""
        done: Future[list[BaseException | None]] = Future()
        if not rows:
            done.set_result([])
            return done
        futures: list[Future[None]] = [Future() for _ in rows]
        left = [len(rows)]
        lock = threading.Lock()

        def one_done(_: Future[None]) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                done.set_result([f.exception() for f in futures])

        for future in futures:
            future.add_done_callback(one_done)
        self._queue.put(list(zip(rows, futures, strict=True)))
        return done

    def feedback(self, item: Feedback) -> Future[bool]:
        """Store feedback; the future is False when no logged request has that id."""
        done: Future[bool] = Future()
        self._queue.put((item, done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    # ------------------------------------------------------------ the store's state

    def problem(self) -> AdaptlabError | None:
        """What stops the store from being written, found without SQLite (cheap enough
        for every request): deleted, not a file, or not readable and writable; for a
        PostgreSQL store, a connection that failed less than :data:`DOWN_S` ago."""
        if self.postgresql:
            down = self._down
            if down is not None and time.monotonic() - down[0] < DOWN_S:
                return down[1]
            return None
        path = self.path
        try:
            info = path.stat()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return StoreError(
                    "was deleted while the server runs: requests cannot be logged",
                    file=path,
                    fix=f"put the file back (a backup of {path.name}, with its -wal file), or "
                    "restart 'adaptlab serve' to start a new store (API keys must then be "
                    "added again with 'adaptlab keys add')",
                    code="missing",
                )
            return os_error(exc, "the request log")
        if not stat.S_ISREG(info.st_mode):
            return StoreError(
                "is no longer a regular file: requests cannot be logged",
                file=path,
                fix=f"put the run store back at {path} and restart 'adaptlab serve'",
                code="not-a-file",
            )
        for target in (path, path.parent):
            if not os.access(target, os.R_OK | os.W_OK):
                return os_error(
                    OSError(errno.EACCES, "Permission denied", str(target)), "the request log"
                )
        return None

    def check(self, timeout_s: float = 1.0) -> AdaptlabError | None:
        """:meth:`problem`, then a real test: open the file (never creating it), take the
        write lock and release it, waiting at most ``timeout_s`` for another process."""
        if self.postgresql:
            return self._check_postgresql(timeout_s)
        found = self.problem()
        if found is not None:
            return found
        uri = f"{self.path.resolve().as_uri()}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            return database_error(exc, self.path, damaged_fix=_DAMAGED)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            error = database_error(exc, self.path, damaged_fix=_DAMAGED)
            if error.issue.code == "locked":
                return _locked_error(self.path, timeout_s)
            return error
        finally:
            conn.close()
        return None

    def _check_postgresql(self, timeout_s: float) -> AdaptlabError | None:
        """Connect (waiting at most ``timeout_s``, whole seconds, at least 1) and ask."""
        try:
            conn = open_connection(
                self.target, damaged_fix=_DAMAGED, connect_timeout_s=max(1, round(timeout_s))
            )
        except StoreError as exc:
            return exc
        try:
            conn.execute("SELECT COUNT(*) FROM requests").fetchone()
        except StoreError as exc:
            return exc
        finally:
            conn.close()
        return None

    # ------------------------------------------------------------ the writer thread

    def _work(self) -> None:
        marks = _UPSERT
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < 256:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is None for item in items)
                work: list[object] = []
                for item in items:
                    if isinstance(item, list):  # the rows of record_many
                        work.extend(item)
                    elif item is not None:
                        work.append(item)
                if work:
                    self._write_batch(work, marks)
                if stop:
                    return
        finally:
            if self._store is not None:
                self._store.close()

    def _write_batch(self, items: list[object], marks: str) -> None:
        """Commit ``items``; a row SQLite refuses fails alone, a store that cannot be
        written fails them all; every waiting future gets its outcome."""
        try:
            self._write_retrying(items, marks)
            self._down = None
            return
        except self._row_errors as exc:
            if len(items) == 1:
                bad = _row_error(items[0])
                log.error("request log: %s (%s: %s)", bad.issue.message, type(exc).__name__, exc)
                error: BaseException = bad
            else:  # one row is bad: find it, write the others
                for item in items:
                    self._write_batch([item], marks)
                return
        except Exception as exc:  # a full disk, a damaged, deleted or locked file; no server
            error = exc
            if self.postgresql and getattr(getattr(exc, "issue", None), "code", "") in (
                _UNREACHABLE
            ):
                assert isinstance(exc, StoreError)
                self._down = (time.monotonic(), exc)
            log.error(
                "request log: %d entries not written to %s: %s", len(items), self.display, exc
            )
        for item in items:
            if isinstance(item, tuple) and not item[1].done():
                item[1].set_exception(error)

    def _open(self) -> Any:
        """The writer's store: opened on first use, reopened when another file was put
        at the path; never a deleted file (its rows would be lost with it). On
        PostgreSQL: opened on first use and after a failure."""
        if self.postgresql:
            if self._store is None:
                self._store = RunStore(self.target)
            return self._store
        found = self.problem()
        if found is not None:
            raise found
        now_at = _identity(self.path)
        if self._store is not None and now_at != self._opened:
            log.warning("request log: %s was replaced; writing to the new file", self.path)
            self._store.close()
            self._store = None
        if self._store is None:
            self._store = RunStore(self.path)
            wait_ms = int(1000 * max(0.0, min(self.lock_wait_s, 15.0)))
            self._store.conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
            self._opened = _identity(self.path)
        return self._store

    def _drop(self) -> None:
        """Close the writer's store (PostgreSQL: after a failure, to connect anew)."""
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):  # the connection is gone with the server
                store.close()

    def _write_retrying(self, items: list[object], marks: str) -> None:
        """``_write``, tried again while another process (``adaptlab run`` saving a result)
        holds the store's write lock past SQLite's own busy wait, up to ``lock_wait_s``."""
        deadline = time.monotonic() + self.lock_wait_s
        fresh = self._store is None  # a connection opened for this batch
        while True:
            try:
                self._write(self._open(), items, marks)
                return
            except Exception as exc:
                if self.postgresql and isinstance(exc, StoreError):
                    self._drop()  # connect again for the next try or the next batch
                    if not fresh and exc.issue.code == "unavailable":
                        # the connection had died while idle (a server restart): rows are
                        # written again on a new one (an upsert, so never twice)
                        log.warning("request log: connecting again to %s", self.display)
                        fresh = True
                        continue
                if not _locked(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    if self.postgresql:
                        raise _pg_locked_error(self.display, self.lock_wait_s) from exc
                    raise _locked_error(self.path, self.lock_wait_s) from exc
                log.warning("request log: the store is locked; writing again (%s)", self.display)
                time.sleep(min(1.0, left))

    @classmethod
    def _write(cls, store: Any, items: list[object], marks: str) -> None:
        """One transaction; the futures are answered only once it is committed.
        ``marks``: the statement that writes a request row."""
        conn = store.conn
        dialect = getattr(store, "dialect", "sqlite")
        answers: list[tuple[Future[Any], Any]] = []
        with store.transaction():
            for item in items:
                if not isinstance(item, tuple):
                    continue
                entry, done = item
                if isinstance(entry, RequestRecord):
                    values = tuple(storable(v, dialect) for v in astuple(entry))
                    conn.execute(marks, values)
                    answers.append((done, None))
                else:
                    answers.append((done, cls._feedback(conn, entry, dialect)))
        for done, result in answers:
            if not done.done():
                done.set_result(result)

    @staticmethod
    def _feedback(conn: object, fb: Feedback, dialect: str = "sqlite") -> bool:
        found = conn.execute(  # type: ignore[attr-defined]
            "SELECT 1 FROM requests WHERE id = ? AND shadow_of IS NULL",
            (storable(fb.request_id, dialect),),
        ).fetchone()
        if found is None:
            return False
        conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO feedback (request_id, created_at, label, rating, comment, key_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            tuple(
                storable(v, dialect)
                for v in (fb.request_id, now(), fb.label, fb.rating, fb.comment, fb.key_id)
            ),
        )
        return True


_DAMAGED = "restore the file from a backup, or move it away and restart 'adaptlab serve'"


def _locked_error(path: Path, waited_s: float) -> StoreError:
    return StoreError(
        f"locked by another process for over {waited_s:g} s: requests cannot be logged",
        file=path,
        fix="end the program that holds it (a sqlite3 shell, a database browser, a stuck "
        "adaptlab command; see: fuser " + str(path) + "), then send the request again",
        code="locked",
    )


def _pg_locked_error(where: str, waited_s: float) -> StoreError:
    return StoreError(
        f"a lock on the request log's tables was held for over {waited_s:g} s: requests "
        "cannot be logged",
        file=where,
        fix="end the session that holds it (see pg_locks and pg_stat_activity on the "
        "server), then send the request again",
        code="locked",
    )


def _row_error(item: object) -> StoreError:
    entry = item[0] if isinstance(item, tuple) else item
    rid = getattr(entry, "id", None) or getattr(entry, "request_id", "?")
    return StoreError(
        f"the log row of request {rid} could not be stored",
        fix="report this as a bug of adaptlab serve, with the server's log",
        code="row",
    )
