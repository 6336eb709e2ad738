"""The run's encoder while a candidate answers: each list of texts embedded once per run.

Candidates that answer with the same frozen encoder (zero-shot, few-shot, RAG's kNN)
embed the same test and validation batches; computed once, the vectors serve them all.
The memo is keyed per *list* (:func:`~adaptlab.strategies.base.embedding_key`), as
:meth:`~adaptlab.strategies.base.StrategyContext.embed` keys the fit's embeddings: a
vector's last digits depend on the batch it was computed in, so a candidate gets
exactly the vectors its own call would have computed, whichever candidate asked first.

Only the answering passes look vectors up; the timing passes and the one-request
latencies call the encoder itself, so CPU cost, throughput and latency measure real
work (:func:`adaptlab.engine.runner.run_candidate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from adaptlab.backends.base import EncoderBackend
from adaptlab.strategies.base import embedding_key

if TYPE_CHECKING:
    import numpy as np


class SharedEmbeddings(EncoderBackend):
    """``encoder`` with each list of texts it is asked for computed once in ``memo``.

    ``memo`` is the run's memo of embeddings (list key -> n x dim float32 array), shared
    with the strategies' fits. Returns copies: callers may normalise in place.
    """

    name = "shared-embeddings"

    def __init__(self, encoder: EncoderBackend, memo: dict[str, Any]) -> None:
        self.encoder = encoder
        self.memo = memo
        self.model_id = encoder.model_id
        self.batch_size = encoder.batch_size
        self.hits = 0  # lists looked up, not computed (for tests and the time split)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Vectors of ``texts`` in order (n x dim, L2-normalised float32)."""
        key = embedding_key(texts)
        if key in self.memo:
            self.hits += 1
            if on_batch is not None:
                on_batch(len(texts))
        else:
            self.memo[key] = self.encoder.embed(list(texts), on_batch=on_batch)
        vectors: np.ndarray = self.memo[key].copy()
        return vectors
