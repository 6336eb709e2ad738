"""What turns chunks and queries into vectors, and counts their tokens.

:class:`EncoderEmbedder` wraps any local encoder backend (the bundled
all-MiniLM-L6-v2 by default, or any sentence-transformers model); chunk limits are
counted with that model's own tokenizer. :class:`OpenAIEmbedder` calls an
OpenAI-compatible ``/v1/embeddings`` endpoint through the official client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from adaptlab.core.errors import AdaptlabError
from adaptlab.llm.tokens import encoding_is_cached, estimate_tokens
from adaptlab.rag.chunking import word_tokens

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.backends.base import EncoderBackend


class Embedder(Protocol):
    """``embed(texts)`` gives an ``(n, d)`` float32 array of L2-normalised rows."""

    model_id: str
    max_tokens: int

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


class EncoderEmbedder:
    """A local encoder backend as an :class:`Embedder`; ``max_tokens`` is its sequence limit."""

    def __init__(self, backend: EncoderBackend) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        model = getattr(backend, "model", None)
        self._tokenizer: Any = getattr(model, "tokenizer", None)
        self.max_tokens = int(getattr(getattr(backend, "options", None), "max_seq_length", 256))

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        return self.backend.embed(list(texts), on_batch=on_batch)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._tokenizer is None:
            return word_tokens(texts)
        if not texts:
            return []
        ids = self._tokenizer(
            list(texts), add_special_tokens=True, truncation=False, verbose=False
        )["input_ids"]
        return [len(x) for x in ids]


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint (``text-embedding-3-small`` and the like).

    Raises :class:`~adaptlab.core.errors.AdaptlabError` when the key is missing or the
    server answers with an error. Token counts use tiktoken's ``cl100k_base`` (the
    encoding of OpenAI's embedding models) when it is cached, else an estimate;
    ``max_tokens`` is their 8,191-token limit.
    """

    max_tokens = 8191

    def __init__(
        self, name: str, *, base_url: str | None = None, api_key: str | None = None
    ) -> None:
        import openai

        self.model_id = name
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=6)
        self._encoding: Any = None

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        import numpy as np
        import openai

        rows: list[list[float]] = []
        for start in range(0, len(texts), 256):
            batch = list(texts[start : start + 256])
            try:
                resp = self.client.embeddings.create(model=self.model_id, input=batch)
            except openai.OpenAIError as exc:
                raise AdaptlabError(
                    f"the embeddings endpoint failed for model '{self.model_id}': "
                    f"{type(exc).__name__}: {str(exc)[:200]}",
                    fix="check rag.embeddings (name, base_url) and the key variable",
                    code="embeddings",
                ) from None
            rows.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
            if on_batch is not None:
                on_batch(len(batch))
        out = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._encoding is None and encoding_is_cached("cl100k_base"):
            import tiktoken

            self._encoding = tiktoken.get_encoding("cl100k_base")
        if self._encoding is None:  # offline and not cached: the heuristic, no download
            return [estimate_tokens(t) for t in texts]
        return [len(self._encoding.encode(t, disallowed_special=())) for t in texts]
