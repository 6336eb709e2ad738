"""The run's encoder while a candidate answers: each list of texts embedded once per run.

Candidates that answer with the same frozen encoder (zero-shot, few-shot, RAG's kNN)
embed the same test and validation batches; computed once, the vectors serve them all.
The memo is keyed per *list* (:func:`~adaptlab.strategies.base.embedding_key`), as
:meth:`~adaptlab.strategies.base.StrategyContext.embed` keys the fit's embeddings: a
vector's last digits depend on the batch it was computed in, so a candidate gets
exactly the vectors its own call would have computed, whichever candidate asked first.

The timing passes and the one-request latencies measure what a candidate costs, so
they cannot simply look vectors up: :class:`MeteredEncoder` measures each list the
frozen encoder embeds in a given pass once per run (wall and CPU seconds) and charges
that measured cost to every later candidate that asks for the same list in the same
pass. A frozen-encoder candidate's cost per request is then the encoder's, measured
once, plus its own head, measured each time — where three candidates on one encoder
(zero-shot, few-shot, kNN) each embedded the 256-text timing sample three times and
100 single requests, the encoder now does it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class _Measured:
    vectors: np.ndarray
    wall_s: float
    cpu_s: float


class MeteredEncoder(EncoderBackend):
    """``encoder`` in a timing pass: each list embedded once per run and ``tag``, its cost
    charged again to whoever asks for it later.

    ``ledger`` is the run's record for this encoder: ``(tag, list key)`` -> the vectors
    and the wall and CPU seconds the call took when it was computed. ``tag`` names the
    pass (``"timing 0"``, ``"latency"``): a list asked for in pass ``j`` is charged
    what it cost in pass ``j``, so the spread between a candidate's passes is still the
    encoder's measured spread. A call that finds its list adds the recorded seconds to
    :attr:`wall_s` and :attr:`cpu_s` (the caller adds them to its own measured time,
    :meth:`take` for one request); a call that computes it is timed by the caller
    like any other work. Returns copies: callers may normalise in place.
    """

    name = "metered-encoder"

    def __init__(self, encoder: EncoderBackend, ledger: dict[Any, Any], tag: str) -> None:
        self.encoder = encoder
        self.ledger = ledger
        self.tag = tag
        self.model_id = encoder.model_id
        self.batch_size = encoder.batch_size
        self.wall_s = 0.0  # charged seconds, not yet taken
        self.cpu_s = 0.0
        self.replayed = 0  # lists charged, not computed
        self.charged_wall_s = 0.0  # all wall seconds charged, taken or not

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Vectors of ``texts`` in order (n x dim, L2-normalised float32)."""
        key = (self.tag, embedding_key(texts))
        found: _Measured | None = self.ledger.get(key)
        if found is None:
            wall, cpu = time.perf_counter(), time.process_time()
            vectors = self.encoder.embed(list(texts), on_batch=on_batch)
            found = _Measured(vectors, time.perf_counter() - wall, time.process_time() - cpu)
            self.ledger[key] = found
        else:
            self.wall_s += found.wall_s
            self.cpu_s += found.cpu_s
            self.charged_wall_s += found.wall_s
            self.replayed += 1
            if on_batch is not None:
                on_batch(len(texts))
        return found.vectors.copy()

    def take(self) -> tuple[float, float]:
        """The (wall, CPU) seconds charged since the last call, and reset them."""
        out = (self.wall_s, self.cpu_s)
        self.wall_s = self.cpu_s = 0.0
        return out
