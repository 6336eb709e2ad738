"""Evaluation through the providers' batch APIs: half the price, within 24 hours.

Three parts, each small:

* :class:`Collector` records the requests a candidate's runners would send (test,
  validation and consistency answers) without sending any: while it is active
  (:meth:`Collector.active`), :meth:`~adaptlab.backends.runner.LLMRunner.run` hands it
  its requests and gets placeholders back. The engine then sends what it recorded as
  one batch per candidate, and runs the candidate again: every answer comes from the
  response cache.
* :class:`BatchAPI` is the contract of one provider's batch endpoints
  (:mod:`adaptlab.backends.batching.openai`: files + ``/v1/batches``;
  :mod:`adaptlab.backends.batching.anthropic`: ``/v1/messages/batches``).
* :func:`run_batches` uploads, creates, waits and reads the results into the cache,
  and never pays twice: the uploaded file and the batch id are written to
  :class:`BatchStore` (``.adaptlab/batches.db``) the moment the provider returns
  them, so a crash, ``kill -9`` or Ctrl-C and a rerun re-attach to the batch in flight
  (its key is a hash of the model and of the requests' cache keys, so the same
  requests find the same batch). The window between sending ``create`` and storing its
  answer is closed by what the provider lets us look up: OpenAI batches carry
  ``metadata.adaptlab_key`` and the input file is named after the key; an Anthropic
  batch created since the send with the same number of requests is adopted.

Every line's outcome is stored (``succeeded``, ``errored``, ``expired``, ``canceled``,
or ``missing`` when the results hold no line for it) with the provider's error; a
succeeded line's answer enters the response cache as a batch answer
(:mod:`adaptlab.llm.batch`).
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from adaptlab.core.errors import AdaptlabError
from adaptlab.core.format import duration
from adaptlab.core.progress import ProgressSink
from adaptlab.llm.batch import as_batch_answer
from adaptlab.llm.keys import redact
from adaptlab.llm.types import ChatRequest, ChatResponse, Usage
from adaptlab.store.files import open_wal

if TYPE_CHECKING:
    from adaptlab.backends.base import GenerativeBackend
    from adaptlab.llm.cache import ResponseCache

#: Line outcomes a rerun may ask again (synchronously, or in a new batch).
RETRYABLE = frozenset({"errored", "expired", "canceled", "missing"})
#: The metadata key of every OpenAI batch adaptlab creates (as provider jobs carry).
METADATA_KEY = "adaptlab_key"


class BatchError(AdaptlabError):
    """A batch could not be made, followed or read; what was received is cached."""


def api_error(
    sdk: Any,
    exc: Exception,
    doing: str,
    batch_id: str | None = None,
    *,
    key_hint: str,
    not_found_fix: str,
) -> BatchError:
    """A provider SDK's error while ``doing`` something with a batch, as a
    :class:`BatchError` with a fix. ``sdk``: the ``openai`` or ``anthropic`` module (both
    name their errors alike); ``key_hint``: where the key comes from; ``not_found_fix``:
    what a 404 means for this provider. The message is redacted of keys."""
    msg = redact(f"{type(exc).__name__}: {exc}")
    going_on = (
        f"; batch {batch_id} goes on at the provider and a rerun re-attaches to it"
        if batch_id
        else ""
    )
    if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
        fix = f"check the key ({key_hint}) and base_url of the llm"
    elif isinstance(exc, sdk.NotFoundError):
        fix = not_found_fix
    elif isinstance(exc, sdk.APIConnectionError):
        fix = f"check the network and base_url, then run again{going_on}"
    elif isinstance(exc, sdk.APIStatusError) and exc.status_code < 500:
        fix = f"the provider's message says what it refused{going_on}"
    else:
        fix = f"the provider had a problem; run again later{going_on}"
    return BatchError(f"{doing} failed: {msg}", fix=fix, code="batch-api")


# ---------------------------------------------------------------- collecting


class Runner(Protocol):
    """What a collector reads of an :class:`~adaptlab.backends.runner.LLMRunner` (named
    by this shape, since the runner imports this module)."""

    backend: GenerativeBackend
    cache: ResponseCache | None
    identity: dict[str, Any]


#: The collector of the candidate being prepared for a batch (None: requests are sent).
COLLECTOR: ContextVar[Collector | None] = ContextVar("adaptlab_batch_collector", default=None)


@dataclass
class Collected:
    """The requests of one :meth:`LLMRunner.run` call: ``phase`` ("test", "val",
    "consistency"), the runner, each request with its cache key and whether the
    response cache already holds its answer."""

    phase: str
    runner: Runner
    requests: list[ChatRequest]
    keys: list[str]
    cached: list[bool]


class Collector:
    """Records the requests runners would send while :meth:`active`; sends none.

    Each call gets its cached answers, and for the rest a placeholder that reads as a
    refused input (``finish_reason`` ``error:error``), so a strategy makes nothing of
    it; the predictions of a collecting pass are thrown away.
    """

    def __init__(self) -> None:
        self.calls: list[Collected] = []
        self.phase = "test"

    @staticmethod
    def takes(runner: Runner) -> bool:
        """Whether ``runner``'s requests can go in a batch (an OpenAI or Anthropic model)."""
        return batch_api_name(runner.backend) is not None

    def collect(self, runner: Runner, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        keys = [r.cache_key(runner.identity) for r in requests]
        out: list[ChatResponse] = []
        cached: list[bool] = []
        for key in keys:
            hit = runner.cache.get(key) if runner.cache is not None else None
            cached.append(hit is not None)
            out.append(hit if hit is not None else _PLACEHOLDER)
        self.calls.append(Collected(self.phase, runner, list(requests), keys, cached))
        return out

    @contextmanager
    def active(self) -> Iterator[Collector]:
        token = COLLECTOR.set(self)
        try:
            yield self
        finally:
            COLLECTOR.reset(token)


_PLACEHOLDER = ChatResponse(
    text="(not sent: collected for a batch)",
    usage=Usage(0, 0, 0, exact=False),
    latency_ms=0.0,
    finish_reason="error:error",
)


def batch_api_name(backend: GenerativeBackend) -> str | None:
    """ "openai" or "anthropic" for a backend whose provider has a batch API adaptlab
    uses; None otherwise (a local model, the fake backend)."""
    if backend.local:
        return None
    return backend.name if backend.name in ("openai", "anthropic") else None


# ---------------------------------------------------------------- the provider contract


@dataclass(frozen=True)
class Snapshot:
    """A batch as the provider last described it.

    ``status`` is the provider's own word (OpenAI: validating, in_progress, finalizing,
    completed, failed, expired, cancelling, cancelled; Anthropic: in_progress,
    canceling, ended); ``ended``: it will not change again; ``done``/``total`` the
    lines processed so far and in all; ``errors`` a batch-level error (OpenAI's
    ``errors`` of a failed batch), redacted.
    """

    id: str
    status: str
    ended: bool
    done: int
    total: int
    errors: str | None = None
    raw: Any = None


@dataclass(frozen=True)
class LineResult:
    """One line of a batch's results: ``status`` succeeded, errored, expired or canceled;
    ``response`` for a succeeded line, ``error`` (the provider's message) otherwise."""

    custom_id: str
    status: str
    response: ChatResponse | None = None
    error: str | None = None


class BatchAPI(ABC):
    """One provider's batch endpoints, for the requests of one backend (one model).

    ``max_lines``: the most requests one batch takes (OpenAI 50,000 per file, Anthropic
    100,000). An upload is optional: :meth:`upload` returns None where requests travel
    in the create call itself (Anthropic). Methods raise :class:`BatchError` with a fix.
    """

    provider: ClassVar[str]
    max_lines: ClassVar[int]

    def __init__(self, backend: GenerativeBackend) -> None:
        self.backend = backend
        self.config = backend.config

    def find_upload(self, name: str) -> str | None:
        """The id of a file named ``name`` uploaded before (a crash between the upload and
        storing its id; the name holds the batch key), or None."""
        return None

    def upload(self, name: str, items: Sequence[tuple[str, ChatRequest]]) -> str | None:
        """Upload the lines (custom_id, request) as a file named ``name``; its id, or None
        when this provider takes the requests in :meth:`create`."""
        return None

    @abstractmethod
    def find(self, key: str, since: float, lines: int) -> Snapshot | None:
        """A batch this key's create made before its answer was lost (sent at ``since``,
        a Unix time, with ``lines`` requests), or None."""

    @abstractmethod
    def create(
        self, key: str, items: Sequence[tuple[str, ChatRequest]], file_id: str | None
    ) -> Snapshot:
        """Create the batch (24 h window); sent once, without the client's retries."""

    @abstractmethod
    def retrieve(self, batch_id: str) -> Snapshot:
        """The batch as it is now."""

    @abstractmethod
    def results(self, batch: Snapshot, requests: dict[str, ChatRequest]) -> Iterator[LineResult]:
        """Every line of an ended batch that the provider reports, in any order."""

    @abstractmethod
    def close(self) -> None:
        """Release the client's connections."""


# ---------------------------------------------------------------- state


_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    lines INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    file_id TEXT,
    create_sent_at REAL,
    batch_id TEXT,
    status TEXT,
    ended_at TEXT,
    harvested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lines (
    batch_key TEXT NOT NULL,
    custom_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (batch_key, custom_id)
);
CREATE INDEX IF NOT EXISTS lines_by_custom_id ON lines (custom_id);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BatchStore:
    """Batches and their lines, one SQLite file (``.adaptlab/batches.db``); each change
    is committed at once, so ``kill -9`` loses none.

    ``batches``: one row per batch key (provider, model, lines, the uploaded ``file_id``,
    when ``create`` was sent, the provider's ``batch_id`` and last ``status``, whether
    its results were read into the cache). ``lines``: each line's outcome (custom_id is
    the request's response-cache key) and the provider's error.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fix = (
            f"delete it (rm {self.path}) and run again: a batch still in flight at the "
            "provider is then not re-attached to (OpenAI's is found by its metadata)"
        )
        self.conn = open_wal(self.path, _SCHEMA, damaged_fix=fix, isolation_level=None)

    def get(self, key: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM batches WHERE key = ?", (key,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def begin(self, key: str, provider: str, model: str, lines: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO batches (key, provider, model, lines, created_at) "
            "VALUES (?,?,?,?,?)",
            (key, provider, model, lines, _now()),
        )

    def update(self, key: str, **values: Any) -> None:
        cols = ", ".join(f"{name} = ?" for name in values)
        self.conn.execute(f"UPDATE batches SET {cols} WHERE key = ?", (*values.values(), key))

    def record_lines(self, key: str, outcomes: Sequence[tuple[str, str, str | None]]) -> None:
        """Store (custom_id, status, error) of each line of batch ``key``, in one commit."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR REPLACE INTO lines VALUES (?,?,?,?)",
                [(key, cid, status, error) for cid, status, error in outcomes],
            )

    def failed_before(self, custom_ids: Sequence[str]) -> set[str]:
        """The ids among ``custom_ids`` whose latest batch line did not succeed."""
        out: set[str] = set()
        for start in range(0, len(custom_ids), 500):
            chunk = list(custom_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT custom_id, status FROM lines WHERE custom_id IN ({marks})", chunk
            ).fetchall()
            good = {cid for cid, status in rows if status == "succeeded"}
            out |= {cid for cid, status in rows if status in RETRYABLE and cid not in good}
        return out

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------- the flow


@dataclass
class BatchOutcome:
    """What :func:`run_batches` did: the batches (id, status, lines, re-attached or not),
    the lines by outcome, the keys answered into the cache and those left without one."""

    provider: str
    batches: list[dict[str, Any]] = field(default_factory=list)
    lines: Counter[str] = field(default_factory=Counter)
    answered: set[str] = field(default_factory=set)
    unanswered: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # custom_id -> provider's error


def batch_key(provider: str, identity: dict[str, Any], keys: Sequence[str]) -> str:
    """32 hex digits of sha256 over the provider, the model identity and the sorted cache
    keys of the lines: the same requests to the same model give the same key."""
    blob = json.dumps(
        {"provider": provider, "model": identity, "lines": sorted(keys)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def run_batches(
    api: BatchAPI,
    items: Sequence[tuple[str, ChatRequest]],
    *,
    store: BatchStore,
    cache: ResponseCache,
    identity: dict[str, Any],
    progress: ProgressSink | None = None,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    label: str = "batch",
) -> BatchOutcome:
    """Answer ``items`` (cache key, request) through ``api``'s batches; returns the outcome.

    Splits them into batches of at most ``api.max_lines``; for each, re-attaches to the
    batch ``store`` knows for its key (or that the provider shows was made for it), else
    uploads and creates one, storing each id the moment it exists. Then polls every
    ``poll_s`` seconds until all have ended, showing progress, and reads each ended
    batch's lines: a succeeded one's answer goes into ``cache`` (as a batch answer, under
    ``identity``), every line's outcome into ``store``. Ctrl-C stops the waiting, not
    the batches: a rerun re-attaches. Raises :class:`BatchError` when the provider
    cannot be reached or refuses a batch.
    """
    progress = progress or ProgressSink()
    outcome = BatchOutcome(api.provider)
    requests = dict(items)
    chunks = [list(items[i : i + api.max_lines]) for i in range(0, len(items), api.max_lines)]
    pending: dict[str, Snapshot] = {}
    chunk_ids: dict[str, list[str]] = {}
    for chunk in chunks:
        key = batch_key(api.provider, identity, [k for k, _ in chunk])
        chunk_ids[key] = [k for k, _ in chunk]
        snap, attached = _attach_or_create(api, store, key, chunk)
        outcome.batches.append(
            {"id": snap.id, "key": key, "lines": len(chunk), "reattached": attached}
        )
        word = "re-attached to" if attached else "created"
        progress.info(
            f"{label}: {word} {api.provider} batch {snap.id} ({len(chunk):,} requests, "
            f"{snap.status}); a batch may take up to 24 h. Ctrl-C stops waiting, not the "
            "batch: 'adaptlab run' again re-attaches to it, and nothing is paid twice"
        )
        pending[key] = snap
    try:
        ended = _wait(api, store, pending, progress, poll_s, sleep, label)
    except KeyboardInterrupt:
        ids = ", ".join(s.id for s in pending.values())
        progress.info(
            f"{label}: stopped waiting; {api.provider} batch {ids} goes on at the provider. "
            "Run 'adaptlab run' again (with --batch if you gave it) to re-attach"
        )
        raise
    for key, snap in ended.items():
        _harvest(api, store, cache, identity, key, snap, requests, chunk_ids[key], outcome)
        entry = next(b for b in outcome.batches if b["key"] == key)
        entry["status"] = snap.status
    outcome.unanswered = [k for k, _ in items if k not in outcome.answered]
    return outcome


def _attach_or_create(
    api: BatchAPI, store: BatchStore, key: str, chunk: list[tuple[str, ChatRequest]]
) -> tuple[Snapshot, bool]:
    store.begin(key, api.provider, api.config.name, len(chunk))
    state = store.get(key) or {}
    if state.get("batch_id"):
        return api.retrieve(str(state["batch_id"])), True
    if state.get("create_sent_at") is not None:
        # A create was sent and its answer never stored (kill -9, a lost connection).
        found = api.find(key, float(state["create_sent_at"]), len(chunk))
        if found is not None:
            store.update(key, batch_id=found.id, status=found.status)
            return found, True
    file_id = state.get("file_id")
    name = f"adaptlab-batch-{key}.jsonl"
    if not file_id:
        file_id = api.find_upload(name)
        if file_id is None:
            file_id = api.upload(name, chunk)
        if file_id is not None:
            store.update(key, file_id=file_id)
    store.update(key, create_sent_at=time.time())
    snap = api.create(key, chunk, file_id)
    store.update(key, batch_id=snap.id, status=snap.status)
    return snap, False


def _wait(
    api: BatchAPI,
    store: BatchStore,
    pending: dict[str, Snapshot],
    progress: ProgressSink,
    poll_s: float,
    sleep: Callable[[float], None],
    label: str,
) -> dict[str, Snapshot]:
    total = sum(s.total or 0 for s in pending.values()) or None
    ids = ", ".join(s.id for s in pending.values())
    t0 = time.monotonic()
    shown = 0
    statuses = {k: s.status for k, s in pending.items()}
    with progress.task(f"{label}: {api.provider} batch {ids}", total) as advance:
        while True:
            done = sum(s.done for s in pending.values())
            if done > shown:
                advance(done - shown)
                shown = done
            for key, snap in pending.items():
                if snap.status != statuses[key]:
                    statuses[key] = snap.status
                    store.update(key, status=snap.status)
            if all(s.ended for s in pending.values()):
                if total and shown < total:
                    advance(total - shown)
                break
            sleep(poll_s)
            for key, snap in list(pending.items()):
                if not snap.ended:
                    pending[key] = api.retrieve(snap.id)
    for key, snap in pending.items():
        store.update(key, status=snap.status, ended_at=_now())
    waited = time.monotonic() - t0
    if waited >= 60:
        progress.info(f"{label}: batch ended after {duration(waited)}")
    return pending


def _harvest(
    api: BatchAPI,
    store: BatchStore,
    cache: ResponseCache,
    identity: dict[str, Any],
    key: str,
    snap: Snapshot,
    requests: dict[str, ChatRequest],
    ids: list[str],
    outcome: BatchOutcome,
) -> None:
    """Read an ended batch's lines: answers into the cache, outcomes into the store."""
    lines: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    mine = set(ids)
    for line in api.results(snap, requests):
        request = requests.get(line.custom_id)
        if request is None or line.custom_id in seen or line.custom_id not in mine:
            continue  # not one of this batch's lines, or a line read twice
        seen.add(line.custom_id)
        if line.status == "succeeded" and line.response is not None:
            cache.put(line.custom_id, identity, request, as_batch_answer(line.response))
            outcome.answered.add(line.custom_id)
        lines.append((line.custom_id, line.status, line.error))
    why = snap.errors or f"the batch {snap.status} and its results hold no line for it"
    lines += [(cid, "missing", why) for cid in ids if cid not in seen]
    store.record_lines(key, lines)
    store.update(key, harvested=1)
    for cid, status, error in lines:
        outcome.lines[status] += 1
        if error and status != "succeeded":
            outcome.errors[cid] = redact(error)


__all__ = [
    "COLLECTOR",
    "METADATA_KEY",
    "RETRYABLE",
    "BatchAPI",
    "BatchError",
    "BatchOutcome",
    "BatchStore",
    "Collected",
    "Collector",
    "LineResult",
    "Runner",
    "Snapshot",
    "batch_api_name",
    "batch_key",
    "run_batches",
]
