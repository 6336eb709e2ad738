"""Search an index: dense, BM25, and their fusion, with optional cross-encoder reranking.

* **dense** — cosine similarity of the query embedding to every chunk embedding
  (exact inner product over L2-normalised rows, :class:`NumpyVectorStore`; the
  same interface runs on PostgreSQL + pgvector, :mod:`adaptlab.rag.pgvector`).
* **bm25** — Okapi BM25 (Robertson & Zaragoza 2009; k1 = 1.5, b = 0.75, Lucene's
  idf) through ``bm25s`` with the Snowball stemmer and stop words of
  ``language``.
* **rrf** — reciprocal-rank fusion, score = Σ 1 / (60 + rank) over both rankings
  (Cormack, Clarke & Büttcher, SIGIR 2009; k = 60 as there).
* **hybrid** — convex combination ``w · dense + (1 − w) · bm25`` of min-max
  normalised scores over each ranking's top ``depth`` (a chunk missing from one
  ranking scores 0 there). Bruch, Gai & Ingber (ACM TOIS 2023, "An analysis of
  fusion functions for hybrid retrieval") find it stronger than RRF when ``w`` is
  tuned on a few labelled queries: :func:`tune_weight`.

Chunks rank chunks; :meth:`Retriever.rank_documents` turns a chunk ranking into a
document ranking by each document's best chunk (MaxP, Dai & Callan, SIGIR 2019).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from adaptlab.core.errors import AdaptlabError

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.rag.chunking import Chunk
    from adaptlab.rag.embedders import Embedder
    from adaptlab.rag.index import RagIndex

Mode = Literal["dense", "bm25", "rrf", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "rrf", "hybrid")
RRF_K = 60

# Snowball stemmer names → bm25s stop-word lists.
_STOPWORDS = {
    "english": "en",
    "german": "de",
    "french": "fr",
    "spanish": "es",
    "italian": "it",
    "dutch": "nl",
    "portuguese": "pt",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "russian": "ru",
    "turkish": "tr",
}


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its row in the index, the fused score and its rank (0-based)."""

    row: int
    chunk: Chunk
    score: float
    rank: int


class VectorStore(Protocol):
    """Exact top-k by inner product; rows are the index's chunk order."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` (m, d) → (rows (m, k) int64, scores (m, k) float32), best first."""
        ...


class NumpyVectorStore:
    """The embedded store: the embedding matrix in memory, exact search by matmul."""

    def __init__(self, embeddings: np.ndarray) -> None:
        self.embeddings = embeddings

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        rows, scores = _top_k(queries @ self.embeddings.T, k)
        return rows, scores.astype(np.float32)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores`` (m, n): (columns int64, scores).

    Best first; ties go to the lower column, also at the k-th place, so every store
    orders (and cuts) equal scores the same way.
    """
    import numpy as np

    m, n = scores.shape
    k = min(k, n)
    if k <= 0:
        part = np.zeros((m, 0), dtype=np.int64)
    elif k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        # argpartition keeps any of the columns tied at the k-th score: keep the lowest.
        kept = (np.take_along_axis(scores, part, axis=1) == kth).sum(axis=1)
        for i in np.flatnonzero((scores == kth).sum(axis=1) > kept):
            above = np.flatnonzero(scores[i] > kth[i, 0])
            tied = np.flatnonzero(scores[i] == kth[i, 0])[: k - len(above)]
            part[i] = np.concatenate([above, tied])
    else:
        part = np.tile(np.arange(n), (m, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return (
        np.take_along_axis(part, order, axis=1).astype(np.int64),
        np.take_along_axis(part_scores, order, axis=1),
    )


class BM25Index:
    """BM25 over the chunks' indexed text (heading path + text), built when opened."""

    def __init__(self, texts: Sequence[str], language: str) -> None:
        import bm25s
        import Stemmer
        from bm25s.tokenization import Tokenizer

        try:
            stemmer = Stemmer.Stemmer(language)
        except KeyError:
            raise AdaptlabError(
                f"no stemmer for language '{language}'",
                fix="set rag.language to one of: " + ", ".join(Stemmer.algorithms()),
                code="rag-language",
            ) from None
        self.tokenizer = Tokenizer(stemmer=stemmer.stemWord, stopwords=_STOPWORDS.get(language, []))
        ids = self.tokenizer.tokenize(list(texts), return_as="ids", show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(self.tokenizer.to_tokenized_tuple(ids), show_progress=False)
        self.size = len(texts)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows (m, k), scores (m, k)), best first; a query with no known term scores 0."""
        import numpy as np

        k = min(k, self.size)
        ids = self.tokenizer.tokenize(
            list(queries), update_vocab=False, return_as="ids", show_progress=False
        )
        rows = np.zeros((len(queries), k), dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        for i, q in enumerate(ids):
            if not q:
                rows[i] = np.arange(k)
                continue
            top, top_scores = _top_k(np.asarray(self.model.get_scores(q))[None, :], k)
            rows[i] = top[0]
            scores[i] = top_scores[0]
        return rows, scores


def _pairs(rows: np.ndarray, scores: np.ndarray) -> list[list[tuple[int, float]]]:
    return [
        list(zip(r.tolist(), s.tolist(), strict=True)) for r, s in zip(rows, scores, strict=True)
    ]


_CONTROLLER: Any = None


def _one_blas_thread() -> Any:
    """numpy's BLAS on one thread while searching.

    OpenBLAS' idle threads spin after a matrix product and starve the encoder's
    threads on a small machine: on 2 cores a query measured 32 ms p50 with the
    BLAS pool free and 14.6 ms with it limited to one thread (SciFact, 10.5k chunks;
    the product itself stays under 1 ms on one thread).
    """
    global _CONTROLLER
    from threadpoolctl import ThreadpoolController

    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _minmax(scores: np.ndarray) -> np.ndarray:
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 1e-12:
        return (scores > 0).astype("float32") if hi > 0 else scores * 0
    return (scores - lo) / (hi - lo)


def fuse(
    dense: tuple[np.ndarray, np.ndarray],
    sparse: tuple[np.ndarray, np.ndarray],
    mode: Mode,
    weight: float,
) -> list[list[tuple[int, float]]]:
    """Fuse two rankings per query into ``[(row, score), …]`` best first.

    ``weight`` is the dense share of the convex combination (``hybrid``); ``rrf``
    ignores it. Ties go to the lower row number.
    """
    out = []
    for d_rows, d_sc, s_rows, s_sc in zip(*dense, *sparse, strict=True):
        scores: dict[int, float] = {}
        if mode == "rrf":
            # A BM25 score of 0 matches no query term: such rows are no ranking at all.
            for rows in (d_rows, s_rows[s_sc > 0]):
                for rank, row in enumerate(rows):
                    scores[int(row)] = scores.get(int(row), 0.0) + 1.0 / (RRF_K + rank + 1)
        else:
            for rows, sc, w in ((d_rows, d_sc, weight), (s_rows, s_sc, 1 - weight)):
                for row, value in zip(rows, _minmax(sc), strict=True):
                    scores[int(row)] = scores.get(int(row), 0.0) + w * float(value)
        out.append(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


class Retriever:
    """Search one :class:`~adaptlab.rag.index.RagIndex` in any of :data:`MODES`.

    ``store`` replaces the in-memory vector store (pgvector); ``reranker`` is a
    sentence-transformers ``CrossEncoder`` that re-scores the fused top
    ``rerank_depth`` chunks.
    """

    def __init__(
        self,
        index: RagIndex,
        embedder: Embedder | None,
        *,
        store: VectorStore | None = None,
        reranker: Any = None,
        rerank_depth: int = 20,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.store = store if store is not None else NumpyVectorStore(index.embeddings)
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self._bm25: BM25Index | None = None

    @property
    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            self._bm25 = BM25Index(
                [c.indexed_text for c in self.index.chunks], self.index.settings.language
            )
        return self._bm25

    def _dense(self, queries: Sequence[str], depth: int) -> tuple[np.ndarray, np.ndarray]:
        if self.embedder is None:
            raise AdaptlabError("dense retrieval needs the index's encoder", code="rag-no-encoder")
        if self.embedder.model_id != self.index.encoder:
            raise AdaptlabError(
                f"the index was embedded with '{self.index.encoder}', the queries would be "
                f"embedded with '{self.embedder.model_id}'",
                fix="use the same rag.encoder for indexing and search, or re-index",
                code="rag-encoder-mismatch",
            )
        vectors = self.embedder.embed(list(queries))
        with _one_blas_thread():
            return self.store.search(vectors, depth)

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        weight: float = 0.5,
        depth: int = 100,
    ) -> list[list[Hit]]:
        """The top ``k`` chunks for each query, best first."""
        if mode not in MODES:
            raise AdaptlabError(
                f"unknown retrieval mode '{mode}'",
                fix="use one of: " + ", ".join(MODES),
                code="rag-mode",
            )
        if not queries:
            return []
        depth = max(depth, k)
        if mode == "dense":
            ranked = _pairs(*self._dense(queries, depth))
        elif mode == "bm25":
            with _one_blas_thread():
                rows, scores = self.bm25.search(queries, depth)
            # Rows scoring 0 share no term with the query: not results.
            ranked = [[(r, s) for r, s in pairs if s > 0] for pairs in _pairs(rows, scores)]
        else:
            dense = self._dense(queries, depth)
            with _one_blas_thread():
                ranked = fuse(dense, self.bm25.search(queries, depth), mode, weight)
        if self.reranker is not None:
            ranked = [self._rerank(q, r) for q, r in zip(queries, ranked, strict=True)]
        chunks = self.index.chunks
        return [
            [Hit(row, chunks[row], float(score), rank) for rank, (row, score) in enumerate(r[:k])]
            for r in ranked
        ]

    def search(self, query: str, k: int = 10, **kw: Any) -> list[Hit]:
        """:meth:`search_many` for one query."""
        return self.search_many([query], k, **kw)[0]

    def _rerank(self, query: str, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
        head = ranked[: self.rerank_depth]
        pairs = [(query, self.index.chunks[row].indexed_text) for row, _ in head]
        scores = self.reranker.predict(pairs, show_progress_bar=False)
        rescored = sorted(
            ((row, float(s)) for (row, _), s in zip(head, scores, strict=True)),
            key=lambda kv: (-kv[1], kv[0]),
        )
        return rescored + ranked[self.rerank_depth :]

    def timed_search(self, query: str, k: int = 10, **kw: Any) -> tuple[list[Hit], float]:
        """One query's hits and its wall time in ms, query embedding included."""
        start = time.perf_counter()
        hits = self.search(query, k, **kw)
        return hits, (time.perf_counter() - start) * 1000


def rank_documents(hits: Sequence[Hit], k: int) -> list[tuple[str, float]]:
    """The first ``k`` distinct documents of a chunk ranking, each at its best chunk."""
    seen: dict[str, float] = {}
    for hit in hits:
        if hit.chunk.doc_id not in seen:
            seen[hit.chunk.doc_id] = hit.score
            if len(seen) == k:
                break
    return list(seen.items())
