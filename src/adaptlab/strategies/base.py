"""The strategy contract: ``fit(train, val)`` then ``predict(texts)``.

A strategy is one folder under ``strategies/`` with ``config.py`` (its pydantic
options, light to import) beside ``strategy.py`` (the implementation), and one
entry point in the ``adaptlab.strategies`` group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from adaptlab.core.progress import ProgressSink
from adaptlab.core.types import CurvePoint, Prediction

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.backends.base import EncoderBackend
    from adaptlab.backends.runner import LLMRunner
    from adaptlab.config import CandidateConfig, ProjectConfig
    from adaptlab.data import Example


class Retrieve(Protocol):
    """``retrieve(texts, k)`` → (hits per text, best first; ms per text, query embedding
    included) over the project's document index, as its ``rag:`` section says.

    The keyword-only overrides change one call only (a search over retrieval settings):
    ``weight`` replaces ``rag.hybrid_weight`` (the dense share in [0, 1], mode hybrid),
    ``rerank`` turns ``rag.reranker`` off (False) or asks for it (True); None keeps
    the project's.
    """

    def __call__(
        self,
        texts: Sequence[str],
        k: int,
        *,
        weight: float | None = None,
        rerank: bool | None = None,
    ) -> tuple[list[list[Any]], list[float]]: ...


class StrategyOptions(BaseModel):
    """Base of every strategy's options; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StrategyContext:
    """What a strategy gets from the runner: the models, labels, seed and a folder.

    ``backend`` is the encoder (None for a strategy that needs none); ``llm`` is the
    runner of the candidate's generative model, for generative strategies.
    """

    backend: EncoderBackend | None
    labels: dict[str, str]
    seed: int
    workdir: Path
    progress: ProgressSink = field(default_factory=ProgressSink)
    _cache: dict[str, np.ndarray] = field(default_factory=dict)
    llm: LLMRunner | None = None
    task: str = "classification"
    root: Path = field(default_factory=Path.cwd)  # the project folder, for template paths
    task_options: dict[str, object] = field(default_factory=dict)
    #: The data's language (ISO 639-1): which language's built-in prompt templates a
    #: prompting candidate uses (the project's ``language:``, else detected).
    language: str = "en"
    #: The candidate's model with some ``llms:`` fields changed, for a strategy that
    #: trains its own: ``llm_variant(adapter="…/adapter")`` (a local LoRA adapter) or
    #: ``llm_variant(name="ft:gpt-4o-mini:…")`` (a provider's fine-tuned model). The
    #: runner shares the project's response cache; each variant loads once per run.
    llm_variant: Callable[..., LLMRunner] | None = None
    #: The runner of another entry under ``llms:``, by its name (a prompt search's
    #: proposer); it shares the project's response cache. None where nothing is sent.
    llm_named: Callable[[str], LLMRunner] | None = None
    #: The candidate's generative backend as the config names it, ``(name, constrained
    #: answers it gives)`` (:attr:`~adaptlab.backends.base.GenerativeBackend.constrained`),
    #: known without loading it: a dry run builds its requests, and their cache keys,
    #: in the answer mode the real run uses.
    llm_backend: tuple[str, frozenset[str]] | None = None
    #: RAG: ``retrieve(texts, k)`` over the project's document index (:class:`Retrieve`);
    #: None without ``rag:``.
    retrieve: Retrieve | None = None
    #: ``score(predictions, examples)`` → (the metric's name, one score per example in
    #: [0, 1]) on the project's metric, for a search that compares settings on the
    #: validation split; None: label accuracy.
    score: Callable[[Sequence[Prediction], Sequence[Example]], tuple[str, list[float]]] | None = (
        None
    )

    @property
    def encoder(self) -> EncoderBackend:
        if self.backend is None:
            raise RuntimeError("this strategy was set up without an encoder")
        return self.backend

    def embed(self, texts: Sequence[str], *, description: str = "embedding") -> np.ndarray:
        """Frozen-model embeddings, memoised across the candidates of a run.

        Memoised per list of texts, not per text: a vector's last digits depend on the
        batch it was computed in, so a candidate's vectors must depend only on what it
        asks for, never on what another candidate asked first (training amplifies
        those digits: ``run -c finetune`` and a resumed fine-tune would differ from a
        full run). Candidates that ask for the same list still share it.

        For fitting only: prediction calls the backend itself (the runner's answering
        passes share each list's vectors across candidates, its timing passes and
        latencies measure each list once per run and charge it to every candidate that
        asks, see :mod:`adaptlab.engine.embeddings`).
        """
        import numpy as np

        if not texts:
            return np.zeros((0, 0))
        key = embedding_key(texts)
        if key not in self._cache:
            with self.progress.task(description, len(texts)) as advance:
                self._cache[key] = self.encoder.embed(list(texts), on_batch=advance)
        return self._cache[key].copy()  # callers may normalise in place


def embedding_key(texts: Sequence[str]) -> str:
    """The key of a list of texts in a run's memo of embeddings (SHA-256 hex of the list
    as JSON): one key per list, in order, never per text (see
    :meth:`StrategyContext.embed`)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()


class Strategy(ABC):
    """Base of every adaptation strategy."""

    name: ClassVar[str]
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    trains_weights: ClassVar[bool] = False
    generative: ClassVar[bool] = False  # prompts a model from the project's llms:
    #: The adaptation route, for costs and the profile's rules: "prompt", "rag",
    #: "finetune" or "classical" (a candidate with ``context_k`` adds RAG to its route).
    route: ClassVar[str] = "prompt"
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    #: What of the project the answers depend on, besides the options, split and seed:
    #: "label_names" (in order), "label_descriptions" (names and descriptions) and
    #: "encoder" (``model:``, when :meth:`needs_encoder`). It decides the result key, so
    #: editing what a strategy does not read keeps its stored result. The default
    #: assumes everything; declare less only for what the strategy truly ignores.
    reads: ClassVar[frozenset[str]] = frozenset({"label_names", "label_descriptions", "encoder"})
    #: Bumped when a fix changes this strategy's answers; it enters the result key, so
    #: only this strategy's stored results are recomputed.
    revision: ClassVar[int] = 0
    #: Cheap to refit, so a classification run cross-validates it over train+val
    #: (``evaluation.cv_folds``): its fit takes seconds, pays for no call, stops on no
    #: validation score and keeps nothing between fits. Each fold fits a fresh instance
    #: on the other folds (their train examples as ``train``, their val examples as
    #: ``val``, so a hyper-parameter chosen on val is chosen again without the held-out
    #: fold) and answers the held-out fold with :meth:`predict`.
    cv_refit: ClassVar[bool] = False

    @classmethod
    def needs_encoder(cls, options: StrategyOptions) -> bool:
        """Whether this candidate needs the encoder (the classifier strategies do)."""
        return True

    @classmethod
    def check_project(
        cls, options: StrategyOptions, config: ProjectConfig, candidate: CandidateConfig
    ) -> tuple[tuple[str | int, ...], str, str] | None:
        """What in ``options`` does not fit the rest of the project (a ``tune:`` of
        retrieval without ``rag:``, a proposer not under ``llms:``), or None. A problem
        is ``(key path under the candidate's params, message, fix)``; the project loader
        raises it with the file and line. The default asks the options themselves
        (``options.check_project(config)``, where they define it)."""
        check = getattr(options, "check_project", None)
        problem: tuple[tuple[str | int, ...], str, str] | None = (
            check(config) if check is not None else None
        )
        return problem

    @classmethod
    def other_llms(cls, options: StrategyOptions) -> tuple[str, ...]:
        """Entries under ``llms:`` this candidate's answers depend on besides its own
        ``llm`` (a prompt-search's proposer): their models enter the result key."""
        return ()

    @classmethod
    def key_extra(
        cls, options: StrategyOptions, root: Path, task: str, language: str = "en"
    ) -> dict[str, object]:
        """Inputs to a result besides the options (a prompt template's version, which
        depends on the data's ``language`` for a built-in template)."""
        return {}

    def __init__(self, options: StrategyOptions, ctx: StrategyContext) -> None:
        self.options = options
        self.ctx = ctx
        self.curves: list[CurvePoint] = []
        self.info: dict[str, object] = {}

    @property
    def label_names(self) -> list[str]:
        return list(self.ctx.labels)

    @abstractmethod
    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        """Prepare from the training split; ``val`` is for early stopping only."""

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order; never fewer."""

    def predict_val(self, texts: Sequence[str]) -> list[Prediction]:
        """Answers to the validation inputs, as a model that never saw their labels.

        Candidates are chosen on these answers, so a strategy that keeps the
        validation examples themselves (a kNN index over train + val) must hide them
        here; otherwise each input would find itself. Early stopping or a
        hyper-parameter chosen on val is allowed (the usual protocol) and is the
        default: :meth:`predict`.
        """
        return self.predict(texts)

    def predict_samples(self, texts: Sequence[str], n: int) -> list[list[Prediction]]:
        """``n`` independent predictions per text (consistency); ``[sample][text]``."""
        return [self.predict(texts) for _ in range(n)]

    # ------------------------------------------------------------ export and serving

    def restore_fit(
        self, train: Sequence[Example], val: Sequence[Example], info: dict[str, Any]
    ) -> None:
        """Become the model of a stored result again, for ``adaptlab export``.

        ``info`` is that result's info. The default fits again, which gives the same
        model for every strategy whose fit is deterministic and cheap (seeded shot
        choice, a kNN index, a logistic regression); a strategy whose fit trains or
        pays loads what its run kept instead, and raises :class:`AdaptlabError` when
        that is gone.
        """
        self.fit(train, val)

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write what :meth:`predict` needs into ``folder``; returns JSON-ready state.

        Files are arrays (.npz), skops (scikit-learn), safetensors or JSON: never a
        pickle (see :mod:`adaptlab.strategies.state`). Raises NotImplementedError for a
        strategy that cannot be exported.
        """
        raise NotImplementedError(f"strategy '{self.name}' cannot be exported yet")

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        """Restore, from :meth:`save_state`'s files and state, what :meth:`fit` made."""
        raise NotImplementedError(f"strategy '{self.name}' cannot be loaded from an export")
