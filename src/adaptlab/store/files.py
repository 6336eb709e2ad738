"""The project folder's own files: clear errors for every state they can be found in.

A project folder travels (copied, unpacked, shared, mounted read-only) and its
SQLite files outlive the adaptlab that wrote them. Whatever state a file is in —
not a database, damaged, locked by another process, on a full or read-only disk,
a file where a folder belongs — the user gets the path and what to do, never a
``sqlite3`` or ``OSError`` traceback. :func:`os_error` is also what the CLI uses
for an ``OSError`` that reaches it from anywhere else.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any, NoReturn

from adaptlab.core.errors import AdaptlabError

#: Seconds a command waits for another process's write lock on a store before giving up.
BUSY_TIMEOUT_S = 15.0


class StoreError(AdaptlabError):
    """A file in the project's state folder cannot be used as it is."""


def _first_non_folder(path: Path) -> Path | None:
    """The nearest existing path on the way to ``path`` that is not a folder."""
    for p in [path, *path.parents]:
        if p.exists():
            return None if p.is_dir() else p
    return None


def os_error(exc: OSError, what: str | None = None) -> AdaptlabError:
    """An ``OSError`` as a user error naming the file and the fix, chosen by errno."""
    name = exc.filename if exc.filename is not None else exc.filename2
    path = Path(str(name)) if name is not None else None
    target = str(path) if path is not None else "a file"
    about = f" ({what})" if what else ""
    code = exc.errno
    folder = path.parent if path is not None else Path(".")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return StoreError(
            f"no space left on the device{about}",
            file=path,
            fix=f"free some space there (df -h {folder}) and run again; finished candidates "
            "are stored and are not recomputed",
            code="disk-full",
        )
    if code == errno.EROFS:
        return StoreError(
            f"on a read-only file system{about}",
            file=path,
            fix="copy the project to a writable folder (cp -r) and run there",
            code="read-only",
        )
    if code in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"permission denied{about}",
            file=path,
            fix=f"make it readable and writable for your user (chmod -R u+rwX {folder}), or "
            "copy the project to a folder you own",
            code="permission",
        )
    if code in (errno.ENOTDIR, errno.EEXIST) and path is not None:
        blocker = _first_non_folder(path) or path
        return StoreError(
            f"a file is here, where adaptlab needs a folder{about}",
            file=blocker,
            fix=f"move the file away (mv {blocker} {blocker}.bak) and run again",
            code="not-a-folder",
        )
    if code == errno.EISDIR:
        return StoreError(
            f"a folder is here, where adaptlab needs a file{about}",
            file=path,
            fix=f"move the folder away (mv {target} {target}.bak), or name another file",
            code="is-a-folder",
        )
    if code == errno.ENOENT:
        return StoreError(
            f"does not exist{about}",
            file=path,
            fix="check the path; a folder on the way to it may have been moved or deleted",
            code="missing",
        )
    if code in (errno.EMFILE, errno.ENFILE):
        return StoreError(
            f"too many open files{about}",
            file=path,
            fix="raise the limit (ulimit -n 4096) or lower max_concurrency",
            code="too-many-files",
        )
    return StoreError(
        f"cannot be used{about}: {exc.strerror or exc}",
        file=path,
        fix="check that the file and its folder exist and are readable and writable",
        code="os-error",
    )


def database_error(exc: sqlite3.Error, path: Path, *, damaged_fix: str) -> StoreError:
    """A SQLite error on ``path`` as a user error, chosen by SQLite's result code."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    low = text.lower()
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in low:
        return StoreError(
            f"locked by another process (waited {BUSY_TIMEOUT_S:g} s)",
            file=path,
            fix="wait for the other adaptlab command to finish, or close the program that "
            "holds the file (a sqlite3 shell, a database browser), then run again",
            code="locked",
        )
    if primary == sqlite3.SQLITE_FULL or "disk is full" in low:
        return StoreError(
            f"no space left on the device ({text})",
            file=path,
            fix=f"free some space there (df -h {path.parent}) and run again; finished "
            "candidates are stored and are not recomputed",
            code="disk-full",
        )
    if (
        primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)
        or "readonly" in low
        or "unable to open" in low
    ):
        return StoreError(
            f"cannot be opened for writing ({text})",
            file=path,
            fix=f"make the folder writable (chmod -R u+rwX {path.parent}), or copy the project "
            "to a writable folder and run there",
            code="read-only",
        )
    if (
        primary in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
        or "not a database" in low
        or "malformed" in low
    ):
        return StoreError(
            f"damaged, or not an adaptlab database ({text})",
            file=path,
            fix=damaged_fix,
            code="damaged",
        )
    if primary == sqlite3.SQLITE_IOERR:
        return StoreError(
            f"the disk could not read or write it ({text})",
            file=path,
            fix="check the disk (df -h, dmesg) and that the folder is writable, then run again",
            code="io-error",
        )
    return StoreError(
        f"could not be used ({text})",
        file=path,
        fix=damaged_fix,
        code="database",
    )


# A bug in a statement, not a state of the file: these stay what they are.
_STATEMENT_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)


class GuardedConnection(sqlite3.Connection):
    """A connection whose every statement turns a SQLite failure into a :class:`StoreError`.

    A truncated file can open cleanly and fail at the first page it misses, deep in a
    report; wrapping the connection rather than each call site names the file there too.
    """

    damaged_fix: str = "move the file away and run again"
    path: Path = Path()

    def _reraise(self, exc: sqlite3.DatabaseError) -> NoReturn:
        if isinstance(exc, _STATEMENT_ERRORS):
            raise exc
        raise database_error(exc, self.path, damaged_fix=self.damaged_fix) from exc

    def execute(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args)
        except sqlite3.DatabaseError as exc:
            self._reraise(exc)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)
        except sqlite3.DatabaseError as exc:
            self._reraise(exc)

    def executescript(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executescript(*args)
        except sqlite3.DatabaseError as exc:
            self._reraise(exc)


def connect(path: Path, *, damaged_fix: str, **kw: Any) -> GuardedConnection:
    """Open ``path`` (creating its folder), with a busy timeout; any failure names the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "the project's state folder") from exc
    if path.is_dir():
        raise os_error(OSError(errno.EISDIR, "Is a directory", str(path)))
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, factory=GuardedConnection, **kw)
    except sqlite3.Error as exc:
        raise database_error(exc, path, damaged_fix=damaged_fix) from exc
    assert isinstance(conn, GuardedConnection)
    conn.path, conn.damaged_fix = path, damaged_fix
    return conn


def open_wal(path: Path, schema: str, *, damaged_fix: str, **kw: Any) -> GuardedConnection:
    """:func:`connect` to ``path``, in WAL mode, with ``schema`` (``CREATE ... IF NOT
    EXISTS`` statements) applied; the connection is closed again if any of it fails.
    Raises :class:`StoreError` naming the file (with ``damaged_fix`` for a damaged one)."""
    conn = connect(path, damaged_fix=damaged_fix, **kw)
    try:
        enable_wal(conn)
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


def enable_wal(conn: sqlite3.Connection) -> None:
    """Put a connection's file in WAL mode, waiting out another process opening it too.

    Switching a fresh file to WAL needs a moment alone with it, and SQLite answers
    "locked" at once, without its busy handler, when another process opens the same
    fresh file at that moment; so retry for as long as a busy store is waited for.
    ``conn`` comes from :func:`connect` (its errors are :class:`StoreError`).
    """
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except StoreError as exc:
            if exc.issue.code != "locked" or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
