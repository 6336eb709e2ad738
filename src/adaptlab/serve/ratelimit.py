"""Per-key rate limits of ``adaptlab serve``: at most ``rpm`` requests of a key in any 60 s.

Two keepers of the count behind one contract, :meth:`hit` (None when the request may
pass, else the seconds until it would):

- :class:`MemoryLimiter`, for a SQLite store (one server): the ``limits`` library's
  moving window in this process's memory. Exact: a request passes when fewer than
  ``rpm`` of the key's requests passed in the 60 s before it.
- :class:`StoreLimiter`, for a PostgreSQL store (any number of replicas). ``limits``
  keeps counts in memory, Redis, Memcached or MongoDB, not in PostgreSQL (limits 5.8),
  so the counts live in the shared store: table ``rate_limit_hits``, one row per key
  and second of the *database server's* clock (``clock_timestamp()``: the replicas'
  own clocks do not matter). A request reads its key's rows of the last 61 seconds and,
  when their sum is below ``rpm``, adds one — both under the key's transaction-scoped
  advisory lock, so two replicas never both take the last place.

Tolerance of :class:`StoreLimiter`: across all replicas, never more than ``rpm``
requests of a key pass in any 60 s (none over). A passed request counts for 60 to
61 s (its whole second of the clock), so a request may be refused up to 1 s before
the exact moving window would pass it, and ``Retry-After`` is up to 1 s longer. Each
limited request costs one transaction of three statements on the store (no cost
for keys without a limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from adaptlab.store.files import StoreError

#: Seconds of the moving window: limits are requests per minute.
WINDOW_S = 60
#: The class id of the advisory locks taken on a key's counts (two-int form: its own
#: key space, apart from the run store's single-bigint locks); "adlr" in ASCII.
LOCK_CLASS = 0x61646C72


class MemoryLimiter:
    """The exact moving window of ``limits`` in this process (one server, SQLite store)."""

    def __init__(self) -> None:
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._item = RateLimitItemPerMinute

    async def hit(self, key_id: str, rpm: int) -> float | None:
        """Count a request of ``key_id``; None when it passes, else seconds to wait."""
        import time

        item = self._item(rpm)
        if self._limiter.hit(item, key_id):
            return None
        reset, _ = self._limiter.get_window_stats(item, key_id)
        return max(0.0, reset - time.time())

    def close(self) -> None:
        """Nothing to release (the counts live in memory)."""


class StoreLimiter:
    """Counts per key and second in the shared PostgreSQL store (see the module's text).

    ``connect``: () -> a new connection to the store (one per worker thread, kept
    open; a connection the server dropped is opened again). ``workers``: threads that
    run the counts, so the event loop never waits on the database. :meth:`hit` raises
    :class:`~adaptlab.store.files.StoreError` when the store cannot be reached.
    """

    def __init__(self, connect: Callable[[], Any], *, workers: int = 4) -> None:
        self._connect = connect
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="adaptlab-limits")
        self._swept: dict[str, int] = {}  # key id -> the second its old rows were last deleted
        self._opened: list[Any] = []

    async def hit(self, key_id: str, rpm: int) -> float | None:
        """Count a request of ``key_id``; None when it passes, else seconds to wait."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.hit_now, key_id, rpm)

    def hit_now(self, key_id: str, rpm: int) -> float | None:
        """:meth:`hit` in the calling thread (blocking)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._opened.append(conn)
        try:
            return self._count(conn, key_id, rpm)
        except StoreError:
            self._local.conn = None  # opened again by the next request of this thread
            with contextlib.suppress(Exception):  # already gone with the server
                conn.close()
            raise

    def _count(self, conn: Any, key_id: str, rpm: int) -> float | None:
        with conn:
            conn.execute("SELECT pg_advisory_xact_lock(?::int4, hashtext(?))", (LOCK_CLASS, key_id))
            # read after the lock: the clock and the counts of the holder before us
            rows = conn.execute(
                "SELECT now.t, c.second, c.hits FROM "
                "(SELECT extract(epoch FROM clock_timestamp())::float8 AS t) AS now "
                "LEFT JOIN rate_limit_hits AS c ON c.key_id = ? "
                "AND c.second >= floor(now.t) - ? ORDER BY c.second",
                (key_id, WINDOW_S),
            ).fetchall()
            t = float(rows[0][0])
            second = math.floor(t)
            counts = [(int(r[1]), int(r[2])) for r in rows if r[1] is not None]
            used = sum(n for _, n in counts)
            if used >= rpm:
                # the oldest seconds leave the window first: second b counts until b + 61
                excess = used - rpm + 1
                for at, n in counts:
                    excess -= n
                    if excess <= 0:
                        return max(0.0, at + WINDOW_S + 1 - t)
                return float(WINDOW_S + 1)  # rpm lowered below what is counted
            conn.execute(
                "INSERT INTO rate_limit_hits (key_id, second, hits) VALUES (?, ?, 1) "
                "ON CONFLICT (key_id, second) DO UPDATE SET hits = rate_limit_hits.hits + 1",
                (key_id, second),
            )
            if self._swept.get(key_id, 0) < second - WINDOW_S:
                conn.execute(
                    "DELETE FROM rate_limit_hits WHERE key_id = ? AND second < ?",
                    (key_id, second - WINDOW_S),
                )
                self._swept[key_id] = second
        return None

    def close(self) -> None:
        """Stop the worker threads and close their connections."""
        self._pool.shutdown(wait=True)
        for conn in self._opened:
            with contextlib.suppress(Exception):  # already gone with the server
                conn.close()
        self._opened.clear()


def retry_after(wait_s: float) -> int:
    """Whole seconds for ``Retry-After`` (at least 1)."""
    return max(1, math.ceil(wait_s))
