"""One connection interface over SQLite and PostgreSQL: the run store's thin dialect layer.

The store's SQL is written once, in the dialect both engines share: ``?``
placeholders, ``INSERT … ON CONFLICT (…) DO UPDATE`` for upserts (SQLite ≥ 3.24),
no ``rowid``/``PRAGMA``/``sqlite_master`` outside :mod:`adaptlab.store.sqlite`'s
SQLite-only branches. On SQLite a connection is the standard library's (through
:class:`~adaptlab.store.files.GuardedConnection`); on PostgreSQL it is a
:class:`PgConnection` over psycopg 3 that offers the same subset: ``execute`` and
``executemany`` with ``?`` placeholders, rows readable as ``row["col"]`` and
``row[0]``, ``with conn:`` as one transaction, ``conn.IntegrityError``.

A thin layer rather than SQLAlchemy Core: the store's ~40 statements need three
translations (placeholders, two column types, one key type), psycopg is already the
pgvector extra's driver, and SQLAlchemy would be a new dependency (and its import,
~0.3 s, a cost on every command).

A connection URL's password is never shown: :func:`display` is the only form of a
target that goes into a message or a log line, and driver messages pass through
:func:`~adaptlab.core.redact.scrub`.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from adaptlab.core.errors import MissingDependencyError
from adaptlab.core.redact import redact_url, scrub
from adaptlab.store.files import StoreError, connect

#: The URL schemes of a PostgreSQL store (libpq's two spellings).
URL_SCHEMES = ("postgresql://", "postgres://")

#: Seconds a connection attempt to a PostgreSQL server waits before giving up.
CONNECT_TIMEOUT_S = 10


def is_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL store (a ``postgresql://`` URL), not a file."""
    return isinstance(target, str) and target.lower().startswith(URL_SCHEMES)


def display(target: str | Path) -> str:
    """``target`` as it may be shown or logged: a path as text, a URL without its password."""
    return redact_url(str(target)) if is_url(target) else str(target)


def dialect_of(conn: object) -> str:
    """ "postgresql" for a :class:`PgConnection`, else "sqlite"."""
    return "postgresql" if isinstance(conn, PgConnection) else "sqlite"


def integrity_errors() -> tuple[type[Exception], ...]:
    """The exception classes of a refused row (a duplicate key, a NOT NULL) in both
    drivers; psycopg's only where it is installed."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError)


# ------------------------------------------------------------------ SQL translation

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def to_postgresql(sql: str) -> str:
    """``sql`` with ``?`` placeholders as psycopg's ``%s`` and a literal ``%`` doubled;
    quoted strings and identifiers are left as they are."""

    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return token

    return _TOKENS.sub(one, sql)


_DDL_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),  # SQLite's INTEGER holds 64 bits
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),  # SQLite's REAL is a float64
]


def ddl_to_postgresql(sql: str) -> str:
    """A migration statement's column types as PostgreSQL spells SQLite's: INTEGER is
    BIGINT, REAL is DOUBLE PRECISION, an AUTOINCREMENT key is BIGSERIAL (so values
    round-trip exactly: PostgreSQL's INTEGER is 32-bit and its REAL 32-bit float)."""
    for pattern, replacement in _DDL_TYPES:
        sql = pattern.sub(replacement, sql)
    return sql


# ------------------------------------------------------------------ rows


class Row(tuple[Any, ...]):
    """A row read as ``row[0]``, ``row["name"]``, ``tuple(row)`` and ``row.keys()``, like
    :class:`sqlite3.Row`."""

    _names: dict[str, int]

    def __new__(cls, values: Iterable[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        return Row(values, names)

    return make


# ------------------------------------------------------------------ errors


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "pgvector") from None
    return psycopg


_URL_FIX = (
    "write it as postgresql://USER@HOST:PORT/DATABASE (the password comes from PGPASSWORD "
    "or ~/.pgpass), in adaptlab.yaml's store: or in ADAPTLAB_STORE_URL"
)


def pg_error(exc: BaseException, url: str, *, connecting: bool = False) -> StoreError:
    """A psycopg failure on the store at ``url`` as a user error: what happened, the URL
    without its password, and the fix; chosen by SQLSTATE, else by libpq's message."""
    where = redact_url(url)
    state = getattr(exc, "sqlstate", None) or ""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = scrub(first, url)
    low = text.lower()
    if (
        state in ("28P01", "28000")
        or "password authentication failed" in low
        or ("no password supplied" in low)
    ):
        return StoreError(
            f"PostgreSQL refused the login ({text})",
            file=where,
            fix="check the user in the URL and its password (PGPASSWORD or ~/.pgpass; "
            "never in adaptlab.yaml), and pg_hba.conf on the server",
            code="auth",
        )
    if state == "3D000" or ("database" in low and "does not exist" in low):
        return StoreError(
            f"the database does not exist ({text})",
            file=where,
            fix="create it (createdb NAME, or CREATE DATABASE NAME in psql) or correct the "
            "name after the last '/' of the URL",
            code="no-database",
        )
    if "role" in low and "does not exist" in low:
        return StoreError(
            f"PostgreSQL has no such user ({text})",
            file=where,
            fix="correct the user before '@' in the URL, or create it (createuser NAME)",
            code="auth",
        )
    if ("invalid" in low and ("dsn" in low or "uri" in low or "connection option" in low)) or (
        "invalid" in low and "value" in low
    ):
        return StoreError(
            f"not a valid connection URL ({text})", file=where, fix=_URL_FIX, code="bad-url"
        )
    if state in ("55P03", "40P01", "40001"):
        return StoreError(
            f"a lock on the store could not be taken ({text})",
            file=where,
            fix="another adaptlab command holds it; wait for it to finish and run again",
            code="locked",
        )
    if state == "53100":
        return StoreError(
            f"the server's disk is full ({text})",
            file=where,
            fix="free space on the database server, then run again; finished candidates are "
            "stored and are not recomputed",
            code="disk-full",
        )
    if state == "42501":
        return StoreError(
            f"permission denied on the server ({text})",
            file=where,
            fix="grant the user CREATE and USAGE on the schema and rights on adaptlab's tables "
            "(GRANT ALL ON SCHEMA public TO USER), or connect as the tables' owner",
            code="permission",
        )
    if state == "25006":
        return StoreError(
            f"the server is read-only ({text})",
            file=where,
            fix="connect to the primary, not a read replica",
            code="read-only",
        )
    if connecting:
        return StoreError(
            f"cannot reach PostgreSQL ({text})",
            file=where,
            fix="check that the server runs and accepts connections at that host and port "
            "(pg_isready -d URL), and the URL: " + _URL_FIX,
            code="unreachable",
        )
    if (
        state.startswith("08")
        or state.startswith("57")
        or "connection" in low
        or ("server closed" in low)
    ):
        return StoreError(
            f"the connection to PostgreSQL was lost ({text})",
            file=where,
            fix="check that the server runs (pg_isready -d URL) and run again; finished "
            "candidates are stored and are not recomputed",
            code="unavailable",
        )
    return StoreError(
        f"PostgreSQL could not run a statement ({text})",
        file=where,
        fix="check the server's log; if the store's tables were changed by hand, restore them",
        code="database",
    )


# ------------------------------------------------------------------ PostgreSQL


def application_name() -> str:
    """Who a connection is, as other sessions see it (``pg_stat_activity``): the holder
    named when a run waits for a result another one computes."""
    return f"adaptlab pid {os.getpid()} on {socket.gethostname()}"[:63]


class PgConnection:
    """A psycopg 3 connection to a PostgreSQL store with :mod:`sqlite3`'s interface subset.

    ``execute(sql, params)`` takes ``?`` placeholders and returns psycopg's cursor (rows
    are :class:`Row`); outside ``with conn:`` / :meth:`transaction` each statement
    commits on its own. A connection the server dropped is opened again at the next
    statement outside a transaction. Server failures raise :class:`StoreError`
    (:func:`pg_error`); a statement's own errors (``conn.IntegrityError``, a bug's
    ``ProgrammingError``) stay psycopg's. Not for use by two threads at once.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> None:
        self._psycopg = _import_psycopg()
        self.url = url
        self.display = redact_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.IntegrityError = self._psycopg.IntegrityError
        self.Error = self._psycopg.Error
        self._transactions: list[Any] = []
        self._blocks: list[Any] = []
        self.raw = self._connect()

    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:  # a URL libpq cannot parse is the user's to fix, not the server's
            psycopg.conninfo.conninfo_to_dict(self.url)
        except (psycopg.Error, ValueError) as exc:
            raise StoreError(
                f"not a valid connection URL ({scrub(str(exc).strip(), self.url)})",
                file=self.display,
                fix=_URL_FIX,
                code="bad-url",
            ) from None
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=self.connect_timeout_s,
                application_name=application_name(),
                row_factory=_row_factory,
            )
        except (psycopg.Error, ValueError) as exc:
            # `from None`: the driver's exception is not chained, in case it quotes the URL.
            raise pg_error(exc, self.url, connecting=True) from None

    def _guard(self, exc: BaseException) -> BaseException:
        psycopg = self._psycopg
        # A server's state (down, full, refusing rights), not a statement's own error.
        state = (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg.errors.InsufficientPrivilege,
        )
        if isinstance(exc, state):
            return pg_error(exc, self.url)
        return exc

    def _ready(self) -> None:
        if (self.raw.closed or self.raw.broken) and not self._transactions:
            self.raw = self._connect()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._ready()
        try:
            return self.raw.execute(to_postgresql(sql), tuple(params) or None)
        except self._psycopg.Error as exc:
            raise self._guard(exc) from None

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Any:
        self._ready()
        rows = [tuple(r) for r in seq]
        cursor = self.raw.cursor()
        if not rows:
            return cursor
        try:
            cursor.executemany(to_postgresql(sql), rows)
        except self._psycopg.Error as exc:
            raise self._guard(exc) from None
        return cursor

    @property
    def in_transaction(self) -> bool:
        return bool(self._transactions)

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """One transaction (a savepoint when nested): committed when the block ends,
        rolled back when it raises."""
        self._ready()
        try:
            tx = self.raw.transaction()
            tx.__enter__()
        except self._psycopg.Error as exc:
            raise self._guard(exc) from None
        self._transactions.append(tx)
        try:
            yield self
        except BaseException as exc:
            self._transactions.pop()
            with suppress(self._psycopg.Error):  # the connection is gone: nothing to roll back
                tx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._transactions.pop()
        try:
            tx.__exit__(None, None, None)
        except self._psycopg.Error as exc:
            raise self._guard(exc) from None

    def __enter__(self) -> PgConnection:
        """``with conn:`` is one transaction, as on :class:`sqlite3.Connection` (it does
        not close the connection)."""
        block = self.transaction()
        self._blocks.append(block)
        return block.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._blocks.pop().__exit__(*exc)

    def close(self) -> None:
        self.raw.close()


def open_connection(
    target: str | Path, *, damaged_fix: str, connect_timeout_s: int = CONNECT_TIMEOUT_S
) -> Any:
    """A connection to the store at ``target`` without migrating it: a
    :class:`~adaptlab.store.files.GuardedConnection` (SQLite rows as :class:`sqlite3.Row`)
    for a path, a :class:`PgConnection` for a ``postgresql://`` URL.

    Raises :class:`StoreError` naming the file or the URL (without password) and the fix.
    """
    if is_url(target):
        return PgConnection(str(target), connect_timeout_s=connect_timeout_s)
    conn = connect(Path(target), damaged_fix=damaged_fix)
    conn.row_factory = sqlite3.Row
    return conn
