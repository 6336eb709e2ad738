"""Vectors from a paid embeddings endpoint, kept on disk: a text is never paid for twice.

The chunks of the documents are kept in the index, but every search embeds its
queries, and a run, a ``--force`` rerun, another retrieval candidate and ``rag eval``
ask for the same questions again. With ``rag.embeddings_llm`` (an OpenAI-compatible
``/v1/embeddings`` model) each of those was a paid request. :class:`CachedEmbedder`
keeps every vector it was sent in ``.adaptlab/embedding_cache.db`` (SQLite), keyed by
the endpoint's identity (backend, model, ``base_url``) and the text, committed as each
batch arrives, so a run killed mid-way keeps what it paid for.

Only a remote embedder is wrapped: a local encoder costs nothing to ask again, and its
vectors depend on the batch they are computed in (see
:meth:`adaptlab.strategies.base.StrategyContext.embed`); an API's vector of a text
does not depend on the other texts of the request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.store.files import open_wal

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.rag.embedders import OpenAIEmbedder

FILE_NAME = "embedding_cache.db"
"""The cache's file in a project's ``.adaptlab`` folder."""

#: Texts sent to the endpoint per request (and committed together).
BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    model_json TEXT NOT NULL,
    dims INTEGER NOT NULL,
    vector BLOB NOT NULL
);
"""


class CachedEmbedder:
    """``inner`` (a paid embeddings endpoint) with each text's vector kept in ``path``.

    :meth:`embed` returns the ``(n, d)`` float32 rows of ``texts`` in order, the known
    ones read back and the others requested in batches of :data:`BATCH` distinct texts,
    each batch stored before the next is sent. :attr:`sent` counts the texts sent to
    the endpoint by this object (for the tests and the report). Raises what ``inner``
    raises (:class:`~adaptlab.core.errors.AdaptlabError` for an endpoint error) and
    :class:`~adaptlab.store.files.StoreError` for an unreadable cache file, naming it.
    """

    def __init__(self, inner: OpenAIEmbedder, path: Path) -> None:
        self.inner = inner
        self.path = path
        self.model_id = inner.model_id
        self.max_tokens = inner.max_tokens
        base_url = getattr(inner.client, "base_url", None)
        self.identity = {
            "backend": "openai-embeddings",
            "model": inner.model_id,
            "base_url": str(base_url) if base_url is not None else None,
        }
        self._prefix = json.dumps(self.identity, sort_keys=True)
        self.sent = 0
        fix = (
            f"delete it (rm {path}) and run again: the vectors it held are requested "
            "again, and paid for again"
        )
        self.conn = open_wal(
            path, _SCHEMA, damaged_fix=fix, isolation_level=None, check_same_thread=False
        )

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._prefix}\x00{text}".encode()).hexdigest()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Vectors of ``texts`` in order (n x d, L2-normalised float32)."""
        import numpy as np

        key_of = {t: self._key(t) for t in texts}
        keys = [key_of[t] for t in texts]
        found = self._read(set(keys))
        if on_batch is not None and found:
            on_batch(sum(1 for k in keys if k in found))
        todo = [t for t, k in key_of.items() if k not in found]  # distinct, in order
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            vectors = self.inner.embed(batch)
            self.sent += len(batch)
            batch_keys = [key_of[t] for t in batch]
            self._write(batch_keys, vectors)
            found.update(zip(batch_keys, vectors, strict=True))
            if on_batch is not None:
                sent = set(batch)
                on_batch(sum(1 for t in texts if t in sent))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _read(self, keys: set[str]) -> dict[str, Any]:
        import numpy as np

        out: dict[str, Any] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT key, dims, vector FROM embeddings WHERE key IN ({marks})", part
            ).fetchall()
            for key, dims, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape == (dims,):  # a damaged row is asked for again
                    out[key] = vector
        return out

    def _write(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows = [
            (key, now, self._prefix, int(v.shape[0]), v.astype("float32").tobytes())
            for key, v in zip(keys, vectors, strict=True)
        ]
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?)", rows)

    def close(self) -> None:
        self.conn.close()
