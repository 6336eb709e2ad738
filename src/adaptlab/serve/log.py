"""The request log: every served request, its answer and its feedback, in the run store.

One writer thread owns the SQLite connection and commits in small batches, so a
request never waits on the disk; feedback goes through the same queue, after the
request it refers to. On shutdown the queue is drained: nothing answered is lost.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adaptlab.store import RunStore

log = logging.getLogger("adaptlab.serve")
LOCKED_RETRIES = 4  # each after SQLite's own busy wait (15 s)


def _locked(exc: BaseException) -> bool:
    issue = getattr(exc, "issue", None)
    return getattr(issue, "code", None) == "locked" or "locked" in str(exc).lower()


COLUMNS = (
    "id, created_at, endpoint, route, candidate, shadow_of, user_hash, key_id, input, output, "
    "score, answer_status, http_status, latency_ms, input_tokens, output_tokens, cost_usd, error"
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
    """Writes :class:`RequestRecord` and :class:`Feedback` rows from a background thread."""

    def __init__(self, store_path: Path) -> None:
        RunStore(store_path).close()  # migrate (and fail here, clearly) before serving
        self.path = store_path
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="adaptlab-request-log")
        self._thread.daemon = True
        self._thread.start()

    def record(self, row: RequestRecord) -> None:
        self._queue.put(row)

    def feedback(self, item: Feedback) -> Future[bool]:
        """Store feedback; the future is False when no logged request has that id."""
        done: Future[bool] = Future()
        self._queue.put((item, done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        store = RunStore(self.path)
        marks = ", ".join("?" * len(COLUMNS.split(", ")))
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < 256:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is None for item in items)
                try:
                    self._write_retrying(store, items, marks)
                except Exception as exc:  # a full disk, a damaged file: say so, keep serving
                    log.error(
                        "request log: %d entries not written to %s: %s", len(items), self.path, exc
                    )
                    for item in items:
                        if isinstance(item, tuple) and not item[1].done():
                            item[1].set_exception(exc)
                if stop:
                    return
        finally:
            store.close()

    def _write_retrying(self, store: Any, items: list[object], marks: str) -> None:
        """``_write``, tried again while another process (``adaptlab run`` saving a result)
        holds the store's write lock past SQLite's own busy wait: up to about a minute."""
        for attempt in range(LOCKED_RETRIES + 1):
            try:
                self._write(store, items, marks)
                return
            except Exception as exc:
                if attempt == LOCKED_RETRIES or not _locked(exc):
                    raise
                log.warning("request log: the store is locked; writing again (%s)", self.path)
                time.sleep(1.0)

    @classmethod
    def _write(cls, store: Any, items: list[object], marks: str) -> None:
        """One transaction; feedback is answered only once it is committed."""
        conn = store.conn
        answers: list[tuple[Future[bool], bool]] = []
        with store.transaction():
            for item in items:
                if isinstance(item, RequestRecord):
                    conn.execute(
                        f"INSERT OR REPLACE INTO requests ({COLUMNS}) VALUES ({marks})",
                        astuple(item),
                    )
                elif isinstance(item, tuple):
                    answers.append((item[1], cls._feedback(conn, item[0])))
        for done, found in answers:
            done.set_result(found)

    @staticmethod
    def _feedback(conn: object, fb: Feedback) -> bool:
        found = conn.execute(  # type: ignore[attr-defined]
            "SELECT 1 FROM requests WHERE id = ? AND shadow_of IS NULL", (fb.request_id,)
        ).fetchone()
        if found is None:
            return False
        conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO feedback (request_id, created_at, label, rating, comment, key_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (fb.request_id, now(), fb.label, fb.rating, fb.comment, fb.key_id),
        )
        return True
