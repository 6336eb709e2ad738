"""The backend contract: one small abstract method per model family.

A backend says what it can do with class attributes (as simonw/llm's ``Model``
does) and takes its options as a pydantic class that refuses unknown keys.

* :class:`EncoderBackend` — ``embed_batch(texts) -> array``; the offline default.
* :class:`GenerativeBackend` — ``execute(request) -> response`` for remote APIs
  (one attempt; the runner owns concurrency, rate limits, retries and the cache),
  or ``generate_batch(requests)`` for local models that batch on this machine.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from adaptlab.llm.tokens import estimate_tokens

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.config import LLMConfig
    from adaptlab.llm.types import ChatRequest, ChatResponse


# Files up to this size are hashed for the fingerprint (configs, tokenizers, most
# adapters); larger weight files go by size and modification time.
_HASH_LIMIT = 16 * 2**20


def fingerprint(*folders: Path) -> str:
    """A short hash of the files in the folders (16 hex digits), so a changed checkpoint
    changes it: files up to 16 MiB by content, larger ones by size and mtime. The
    per-process model caches are keyed by it, so a model saved again into the same
    folder is loaded again, not served stale."""
    digest = hashlib.sha256()
    for folder in folders:
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            stat = file.stat()
            digest.update(f"{folder.name}/{file.name}:{stat.st_size}:".encode())
            if stat.st_size <= _HASH_LIMIT:
                digest.update(hashlib.sha256(file.read_bytes()).digest())
            else:
                digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


class BackendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """Base of every backend. Subclasses set the class attributes below."""

    name: ClassVar[str]
    family: ClassVar[str]  # "encoder" or "generative"
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None
    #: The provider's own endpoint, where ``key_env_var``'s key may go unbound (a key
    #: goes anywhere else only where the user's keys file binds it: adaptlab.llm.keys),
    #: and the variable in which the user may move that endpoint (OPENAI_BASE_URL).
    key_url: ClassVar[str | None] = None
    key_url_env_var: ClassVar[str | None] = None
    can_train: ClassVar[bool] = False
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    model_id: str

    def describe(self) -> dict[str, Any]:
        """What a run records about the model (never a key)."""
        return {"backend": self.name, "model": self.model_id}


class EncoderBackend(Backend):
    """Turns texts into L2-normalised vectors."""

    family: ClassVar[str] = "encoder"

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed one batch; rows are L2-normalised float32 vectors."""

    batch_size: int = 64

    def embed(
        self,
        texts: Sequence[str],
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed any number of texts in batches; ``on_batch(n)`` reports progress."""
        import numpy as np

        # Several batches per call: the encoder sorts a call's texts by length, and
        # less padding measured 1.7x faster than one batch per call.
        step = self.batch_size * 8
        chunks = []
        for start in range(0, len(texts), step):
            batch = texts[start : start + step]
            chunks.append(self.embed_batch(batch))
            if on_batch is not None:
                on_batch(len(batch))
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)


class GenerativeBackend(Backend):
    """A chat model. Built from a project's ``llms:`` entry and the key (if any).

    Remote backends implement :meth:`execute`: one attempt, raising
    :class:`~adaptlab.llm.types.TransientError` for what a retry may fix and
    :class:`~adaptlab.llm.types.PermanentError` for what it cannot. Local backends
    set ``local = True`` and implement :meth:`generate_batch`; the runner calls it
    in a worker thread with up to ``config.batch_size`` requests.
    """

    family: ClassVar[str] = "generative"
    local: ClassVar[bool] = False
    #: The constrained answers it gives: "choices" (a request with ``params.choices`` is
    #: answered by one of them, as :func:`~adaptlab.llm.types.choice_answer` JSON) and
    #: "schema" (``params.json_schema`` is enforced by the provider, not only asked
    #: for). A backend without them gets free-text requests only.
    constrained: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: LLMConfig, api_key: str | None = None) -> None:
        self.config = config
        self.model_id = config.name
        self._api_key = api_key
        #: What the backend changed about requests it was given (a structured output the
        #: server refused, answered in free text instead), one sentence each, for the
        #: run's notes and the report.
        self.notes: list[str] = []

    @property
    def api_key(self) -> str | None:
        """The key this backend was given for its endpoint (None: none), for a client of
        the same endpoint (the provider's batch API); never to be logged or stored."""
        return self._api_key

    async def execute(self, request: ChatRequest) -> ChatResponse:
        """Send one request; return the answer with the usage the provider reported."""
        raise NotImplementedError(f"backend '{self.name}' does not implement execute()")

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer several requests at once (local backends)."""
        raise NotImplementedError(f"backend '{self.name}' does not implement generate_batch()")

    def count_tokens(self, request: ChatRequest) -> tuple[int, bool]:
        """Input tokens of a request and whether the count is exact (else an estimate)."""

        return estimate_tokens(request.prompt_text()), False

    def identity(self) -> dict[str, Any]:
        """What determines an answer besides the request: part of the cache key."""
        return {"backend": self.name, "model": self.model_id, "base_url": self.config.base_url}

    async def aclose(self) -> None:
        """Release connections; called once when a run is over."""
