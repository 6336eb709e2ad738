"""Score a retriever on labelled queries: nDCG@10, recall@k, MRR and latency.

Used by ``adaptlab rag eval`` and ``bench/rag_scifact.py``. Every figure comes with
its per-query values, so intervals (bootstrap) and paired tests between modes are
computed on the same queries. The convex-combination weight is chosen on one set
of queries (:func:`tune_weight`) and reported on another: choosing and reporting on
the same queries would overstate the hybrid.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adaptlab.core.errors import ConfigError
from adaptlab.rag.metrics import Qrels, mrr_at_k, ndcg_at_k, recall_at_k
from adaptlab.rag.search import Hit, Mode, _one_blas_thread, fuse, rank_documents

if TYPE_CHECKING:
    from adaptlab.rag.search import Retriever

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class ModeResult:
    """One retrieval mode on a set of queries; the lists are per query, in query order."""

    mode: str
    weight: float | None
    ndcg10: list[float]
    recall: dict[int, list[float]]
    mrr10: list[float]
    latency_ms: list[float] = field(default_factory=list)

    @staticmethod
    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    @property
    def label(self) -> str:
        return f"hybrid (w={self.weight:.1f})" if self.mode == "hybrid" else self.mode


def split_queries(qids: Sequence[str], tune_share: float, seed: int) -> tuple[list[str], list[str]]:
    """(tuning queries, evaluation queries): a seeded random split of ``qids``.

    Raises :class:`~adaptlab.core.errors.ConfigError` when the split would leave either
    side empty (``--tune 0.9`` on three queries tunes on all of them and reports on none).
    """
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    n_tune = max(1, round(len(order) * tune_share)) if tune_share > 0 else 0
    if tune_share > 0 and not 0 < n_tune < len(order):
        raise ConfigError(
            f"--tune {tune_share:g} on {len(order)} judged quer{'y' if len(order) == 1 else 'ies'} "
            "leaves no query to report on",
            fix=(
                f"lower --tune to at most {int(100 * (len(order) - 1.5) / len(order)) / 100:.2f}, "
                if len(order) > 1
                else "give at least two judged queries (ten or more for a meaningful choice), "
            )
            + "or run without --tune",
        )
    return sorted(order[:n_tune]), sorted(order[n_tune:])


def score_mode(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Qrels,
    qids: Sequence[str],
    mode: Mode,
    *,
    weight: float = 0.5,
    ks: Sequence[int] = (1, 5, 10, 100),
    depth: int = 100,
    hits: Any = None,
) -> ModeResult:
    """Rank documents for ``qids`` in one batch and score them against ``qrels``."""
    if hits is None:
        hits = retriever.search_many(
            [queries[q] for q in qids], depth, mode=mode, weight=weight, depth=depth
        )
    ndcg, mrr = [], []
    recall: dict[int, list[float]] = {k: [] for k in ks}
    for q, h in zip(qids, hits, strict=True):
        docs = [d for d, _ in rank_documents(h, max(ks))]
        ndcg.append(ndcg_at_k(docs, qrels[q], 10))
        mrr.append(mrr_at_k(docs, qrels[q], 10))
        for k in ks:
            recall[k].append(recall_at_k(docs, qrels[q], k))
    return ModeResult(mode, weight if mode == "hybrid" else None, ndcg, recall, mrr)


def tune_weight(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Qrels,
    qids: Sequence[str],
    *,
    grid: Sequence[float] = WEIGHT_GRID,
    depth: int = 100,
) -> tuple[float, dict[float, float]]:
    """The dense weight of the convex combination with the best mean nDCG@10 on ``qids``.

    Returns (best weight, {weight: nDCG@10}); ties go to the weight nearer 0.5.
    Both rankings are computed once and fused per weight.
    """

    texts = [queries[q] for q in qids]
    dense = retriever._dense(texts, depth)
    with _one_blas_thread():
        sparse = retriever.bm25.search(texts, depth)
    table: dict[float, float] = {}
    chunks = retriever.index.chunks

    for w in grid:
        fused = fuse(dense, sparse, "hybrid", w)
        hits = [[Hit(r, chunks[r], s, i) for i, (r, s) in enumerate(f)] for f in fused]
        res = score_mode(retriever, queries, qrels, qids, "hybrid", weight=w, hits=hits)
        table[w] = ModeResult.mean(res.ndcg10)
    best = max(table, key=lambda w: (round(table[w], 12), -abs(w - 0.5)))
    return best, table


def measure_latency(
    retriever: Retriever,
    texts: Sequence[str],
    mode: Mode,
    *,
    k: int = 10,
    weight: float = 0.5,
    warmup: int = 5,
) -> list[float]:
    """Wall time of one query at a time, in ms, query embedding included."""
    for text in texts[:warmup]:
        retriever.search(text, k, mode=mode, weight=weight)
    out = []
    for text in texts:
        start = time.perf_counter()
        retriever.search(text, k, mode=mode, weight=weight)
        out.append((time.perf_counter() - start) * 1000)
    return out
