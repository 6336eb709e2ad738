"""API keys of ``adaptlab serve``: created once, shown once, stored as SHA-256 hashes.

A key is ``al-`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits),
so a plain SHA-256 is the right hash (what GitHub and Stripe do for their tokens):
a slow password hash protects guessable secrets, and these are not guessable. The
store keeps the hash, a display prefix (``al-abc…``) and the key's requests-per-minute
limit; the key itself is printed once by ``adaptlab keys add`` and never written.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from adaptlab.core.errors import AdaptlabError
from adaptlab.serve.checks import text_problem

PREFIX = "al-"


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


def add_key(conn: sqlite3.Connection, name: str, rpm: int | None) -> tuple[ApiKey, str]:
    """Create a key; returns its record and the secret (shown once, stored hashed).

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
    except sqlite3.IntegrityError:
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


def list_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    rows = conn.execute(
        "SELECT id, name, prefix, rpm, created_at, revoked_at FROM api_keys ORDER BY created_at"
    ).fetchall()
    return [ApiKey(*tuple(r)) for r in rows]


def revoke_key(conn: sqlite3.Connection, name_or_id: str) -> ApiKey:
    """Revoke a key by name or id; a running server refuses it within a second."""
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
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (_now(), match[0].id))
    return match[0]


class KeyRing:
    """The active keys by hash, re-read from the store at most once a second on a miss,
    so a key added or revoked while the server runs takes effect without a restart."""

    def __init__(self, connect: object) -> None:
        self._connect = connect  # () -> sqlite3.Connection
        self._by_hash: dict[str, ApiKey] = {}
        self._loaded = 0.0
        self.reload()

    def reload(self) -> None:
        conn = self._connect()  # type: ignore[operator]
        try:
            rows = conn.execute(
                "SELECT id, name, prefix, rpm, created_at, revoked_at, hash FROM api_keys "
                "WHERE revoked_at IS NULL"
            ).fetchall()
        finally:
            conn.close()
        self._by_hash = {r[6]: ApiKey(*tuple(r)[:6]) for r in rows}
        self._loaded = time.monotonic()

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        digest = key_hash(secret)
        key = self._by_hash.get(digest)
        if key is None and time.monotonic() - self._loaded > 1.0:
            self.reload()
            key = self._by_hash.get(digest)
        elif key is not None and time.monotonic() - self._loaded > 1.0:
            self.reload()  # a revoked key stops working within a second
            key = self._by_hash.get(digest)
        return key
