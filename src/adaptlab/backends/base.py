"""The backend contract: one small abstract method per model family.

A backend says what it can do with class attributes (as simonw/llm's ``Model``
does) and takes its options as a pydantic class that refuses unknown keys.

* :class:`EncoderBackend` — ``embed_batch(texts) -> array``; the offline default.
* Generative backends (OpenAI-compatible, Anthropic, local HF) implement
  ``execute(prompt, stream)`` yielding text chunks; they join the same registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np


class BackendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """Base of every backend. Subclasses set the class attributes below."""

    name: ClassVar[str]
    family: ClassVar[str]  # "encoder" or "generative"
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None
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
