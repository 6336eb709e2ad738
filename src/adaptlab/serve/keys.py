"""API keys of ``adaptlab serve``: created once, shown once, stored as SHA-256 hashes.

A key is ``al-`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits),
so a plain SHA-256 is the right hash (what GitHub and Stripe do for their tokens):
a slow password hash protects guessable secrets, and these are not guessable. The
store keeps the hash, a display prefix (``al-abc…``) and the key's requests-per-minute
limit; the key itself is printed once by ``adaptlab keys add`` and never written.

The keys live in the run store, a SQLite file or a PostgreSQL database (the SQL here
is the one both engines take), so every ``adaptlab serve`` replica on one PostgreSQL
store shares them: a key added or revoked through any of them, or by ``adaptlab keys``
on any machine, is seen by every replica within :data:`RELOAD_S` of its commit
(:class:`KeyRing`).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from adaptlab.core.errors import AdaptlabError
from adaptlab.serve.checks import text_problem

PREFIX = "al-"
#: Seconds a server keeps its copy of the keys: a key revoked (or added) in the store
#: is refused (accepted) by every server within this time of its commit (the next
#: request after that re-reads them, one query). Measured on three replicas of one
#: PostgreSQL store, from before ``adaptlab keys revoke`` started to each replica's
#: first 401: 0.13–0.67 s (tests/serve/test_replicas.py, a 2-core machine under load).
#: Polling rather than LISTEN/NOTIFY: it works the same on SQLite, needs no listening
#: connection per server, and misses no revocation across a reconnect.
RELOAD_S = 1.0


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str  # the first characters, to tell keys apart in listings
    rpm: int | None  # requests per minute; None: no limit
    created_at: str
    revoked_at: str | None = None


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def add_key(conn: Any, name: str, rpm: int | None) -> tuple[ApiKey, str]:
    """Create a key; returns its record and the secret (shown once, stored hashed).
    ``conn``: a connection to the run store (SQLite or PostgreSQL).

    Raises :class:`AdaptlabError` when ``name`` is taken, empty or not printable text
    (:func:`check_key_name`).
    """
    if not name.strip():
        raise AdaptlabError("a key needs a name", fix="adaptlab keys add NAME")
    check_key_name(name)
    secret = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(secrets.token_hex(6), name, secret[:9], rpm, _now())
    try:
        with conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, prefix, hash, rpm, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, key.name, key.prefix, key_hash(secret), rpm, key.created_at),
            )
    except conn.IntegrityError:
        raise AdaptlabError(
            f"a key named '{name}' exists already",
            fix="choose another name, or revoke that one (adaptlab keys revoke NAME)",
            code="key-exists",
        ) from None
    return key, secret


def check_key_name(name: str) -> None:
    """Refuse a key name that is not printable text: a lone surrogate (a command-line
    argument that is not UTF-8, which SQLite cannot store), a NUL or another control
    character (which would garble ``keys list``); the error shows the name escaped."""
    problem = text_problem(name)
    if problem is None and not name.isprintable():
        problem = "holds a control character (a tab, newline, escape, ...)"
    if problem is not None:
        raise AdaptlabError(
            f"the key name {name!a} {problem}",
            fix="name the key with printable text, e.g. adaptlab keys add my-app",
            code="bad-key-name",
        )


def list_keys(conn: Any) -> list[ApiKey]:
    """Every key of the store, revoked ones too, oldest first."""
    rows = conn.execute(
        "SELECT id, name, prefix, rpm, created_at, revoked_at FROM api_keys ORDER BY created_at"
    ).fetchall()
    return [ApiKey(*tuple(r)) for r in rows]


def revoke_key(conn: Any, name_or_id: str) -> ApiKey:
    """Revoke a key by name or id; every running server refuses it within
    :data:`RELOAD_S` (1 s)."""
    if text_problem(name_or_id) is not None:
        raise AdaptlabError(
            f"no active key named {name_or_id!a}: that is not valid text",
            fix="see the keys with: adaptlab keys list",
            code="unknown-key",
        )
    match = [k for k in list_keys(conn) if name_or_id in (k.name, k.id) and not k.revoked_at]
    if not match:
        raise AdaptlabError(
            f"no active key named '{name_or_id}'",
            fix="see the keys with: adaptlab keys list",
            code="unknown-key",
        )
    with conn:
        conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (_now(), match[0].id),
        )
    return match[0]


class KeyRing:
    """The active keys by hash, as last read from the store.

    :meth:`due` says when the copy is older than ``max_age_s`` (:data:`RELOAD_S`); the
    server then calls :meth:`reload` (in a worker thread) before it looks a key up, so
    a key added or revoked while servers run takes effect on all of them within that
    time, without a restart. ``connect``: () -> a connection to the store; ``keep``:
    keep it open between reloads (PostgreSQL: one connection instead of one a second;
    SQLite opens the file each time, so a file put back is read).
    """

    def __init__(
        self, connect: Callable[[], Any], *, keep: bool = False, max_age_s: float = RELOAD_S
    ) -> None:
        self._connect = connect
        self._keep = keep
        self._conn: Any = None
        self.max_age_s = max_age_s
        self._by_hash: dict[str, ApiKey] = {}
        self._loaded = 0.0
        self.reload()

    def reload(self) -> None:
        """Read the active keys; raises the store's error (a StoreError) when it cannot."""
        conn = self._conn if self._conn is not None else self._connect()
        try:
            rows = conn.execute(
                "SELECT id, name, prefix, rpm, created_at, revoked_at, hash FROM api_keys "
                "WHERE revoked_at IS NULL"
            ).fetchall()
        except BaseException:
            self._conn = None
            _close(conn)
            raise
        if self._keep:
            self._conn = conn
        else:
            _close(conn)
        self._by_hash = {r[6]: ApiKey(*tuple(r)[:6]) for r in rows}
        self._loaded = time.monotonic()

    def due(self) -> bool:
        """Whether the copy is older than ``max_age_s``."""
        return time.monotonic() - self._loaded > self.max_age_s

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, secret: str) -> ApiKey | None:
        """The active key with this secret in the copy, or None."""
        return self._by_hash.get(key_hash(secret))

    def find(self, secret: str) -> ApiKey | None:
        """:meth:`lookup` after a :meth:`reload` when the copy is :meth:`due` (blocking)."""
        if self.due():
            self.reload()
        return self.lookup(secret)

    def close(self) -> None:
        if self._conn is not None:
            _close(self._conn)
            self._conn = None


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a connection the server dropped is closed already
        conn.close()
