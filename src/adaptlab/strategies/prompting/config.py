"""Options of the generative prompting strategies (light to import)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from adaptlab.strategies.base import StrategyOptions
from adaptlab.strategies.tuning import TuneOptions, UnitFloat, check_values

if TYPE_CHECKING:
    from adaptlab.config import ProjectConfig

#: Options of constrained answers, left out of a dump unless set (see PromptOptions._dump).
ANSWER_OPTIONS = ("answer", "calibrate", "length_norm")


class PromptOptions(StrategyOptions):
    template: str = Field(
        default="auto",
        description="'auto' (the built-in for the task: classify, extract, generate), a "
        "built-in name, or a .j2 file relative to the project folder.",
    )
    system: str | None = Field(
        default=None,
        description="Replaces the template's system part: one candidate per variant is an "
        "A/B test of system prompts.",
    )
    shots: int = Field(default=0, ge=0, le=64, description="Examples shown in the prompt.")
    selector: Literal["stratified", "random", "similar", "mmr"] = Field(
        default="stratified",
        description="How examples are picked: 'stratified' (labels in turn) and 'random' pick "
        "one fixed set; 'similar' (nearest by embeddings) and 'mmr' (near but diverse, "
        "maximal marginal relevance) pick per input.",
    )
    mmr_lambda: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="MMR trade-off: 1 = only similarity, 0 = only diversity.",
    )
    reasoning: bool = Field(
        default=False,
        description="Chain-of-thought: the model reasons first and ends with 'Answer: …'.",
    )
    output: Literal["text", "json"] = Field(
        default="text",
        description="'json' asks for structured output and validates it against a JSON schema.",
    )
    answer: Literal["auto", "constrained", "free"] = Field(
        default="auto",
        description="'constrained': the answer is always one of the labels (classification) "
        "or follows the project's JSON schema (extraction): a local (hf) model scores each "
        "label's likelihood as its answer, an OpenAI-compatible API gets a strict JSON "
        "schema (structured outputs), Anthropic a tool whose input is that schema. "
        "'free': the model writes text and the label is parsed from it. 'auto' (default): "
        "constrained where the backend and the task allow it (not with reasoning, prefill, "
        "cited passages or a generation task), else free.",
    )
    calibrate: Literal["auto", "none", "contextual"] = Field(
        default="auto",
        description="Constrained answers of a local model: 'contextual' divides each label's "
        "probability by its probability for content-free inputs ('N/A', '', '[MASK]'; Zhao "
        "et al. 2021, 'Calibrate before use'); 'auto' uses it where it is more accurate on "
        "the validation split; 'none' never.",
    )
    length_norm: Literal["token", "char", "none"] = Field(
        default="token",
        description="Constrained answers of a local model: a label's log-likelihood divided "
        "by its number of tokens ('token'), of characters ('char', lm-eval-harness's "
        "acc_norm), or not at all ('none').",
    )
    parse: Literal["exact", "normalised", "fuzzy"] = Field(
        default="fuzzy",
        description="Most lenient way a label may be read from an answer; the rest is "
        "counted as unparsed.",
    )
    temperature: float | None = Field(
        default=0.0,
        ge=0,
        le=2,
        description="Sampling temperature; null sends none (models that refuse it; reasoning "
        "models in the price table never get one).",
    )
    context_k: int = Field(
        default=0,
        ge=0,
        le=50,
        description="RAG: passages retrieved from the project's documents (rag:) into the "
        "prompt's context part; 0 = closed-book.",
    )
    cite: bool = Field(
        default=True,
        description="With context_k: ask for the passage ids used, as [1], and check them.",
    )
    prefill: str | None = Field(
        default=None,
        description="Text the answer is made to start with (assistant prefill), e.g. '[' so "
        "that a RAG answer starts with a passage number; local (hf) models only.",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Answer length limit; default 16 for a bare label, 400 with reasoning, "
        "256 otherwise.",
    )

    @model_validator(mode="after")
    def _json_without_reasoning(self) -> PromptOptions:
        if self.output == "json" and self.reasoning:
            raise ValueError("output 'json' and reasoning exclude each other; pick one")
        if self.answer == "constrained":
            for what, on in (("reasoning", self.reasoning), ("prefill", self.prefill)):
                if on:
                    raise ValueError(
                        f"answer 'constrained' and {what} exclude each other (a constrained "
                        f"answer is the label alone); set answer: free or remove {what}"
                    )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # The answer options enter a dump (and so a result key) only when set: a
        # fine-tune's key stays what it was before they existed. A prompted candidate's
        # key holds them through PromptStrategy.key_extra, where the mode changed.
        return self._drop_unset(handler(self))

    def _drop_unset(self, out: dict[str, object]) -> dict[str, object]:
        for name in ANSWER_OPTIONS:
            if name in out and name not in self.model_fields_set:
                del out[name]
        return out

    def answer_tokens(self, task: str) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        if self.reasoning:
            return 400
        return 16 if task == "classification" and self.output == "text" else 256


#: A passage count ``tune.context_k`` may try (``context_k``'s own bounds).
ContextK = Annotated[StrictInt, Field(gt=0, le=50)]


class ContextTune(TuneOptions):
    """``tune:`` of a prompted candidate with ``context_k``: how its passages are retrieved,
    chosen by successive halving on the validation split. Every setting answers nested,
    growing prefixes of the shuffled validation inputs (the answers are paid calls, and a
    prefix answered before comes back from the response cache); the candidate's own
    setting answers all of it. A list left out keeps the candidate's (or ``rag:``'s)
    value, and with no list set ``context_k`` is searched at half and twice its value.
    """

    context_k: list[ContextK] | None = Field(
        default=None, description="Passages per prompt to try (1 to 50)."
    )
    hybrid_weight: list[UnitFloat] | None = Field(
        default=None,
        description="Dense shares of the hybrid score to try, each in [0, 1] (rag.mode "
        "'hybrid' only); the default is rag.hybrid_weight.",
    )
    reranker: list[StrictBool] | None = Field(
        default=None,
        description="Reranking on (true) and/or off (false) to try; needs rag.reranker, "
        "which is the default.",
    )

    @field_validator("context_k", "hybrid_weight", "reranker")
    @classmethod
    def _values(cls, value: list[object] | None, info: ValidationInfo) -> list[object] | None:
        check_values(str(info.field_name), value)
        return value


class ContextTunedOptions(PromptOptions):
    """The prompting strategies' options with ``tune:`` of retrieval (``context_k`` > 0)."""

    tune: ContextTune | None = Field(
        default=None,
        description="RAG: choose context_k (and rag's hybrid_weight and reranker on/off) "
        "on the validation split within max_minutes; the test split is answered with the "
        "best. Needs context_k > 0.",
    )

    #: The default setting's hybrid_weight and reranker are the project's ``rag:``.
    tune_reads_project: ClassVar[bool] = True

    @model_validator(mode="after")
    def _tune_needs_context(self) -> ContextTunedOptions:
        if self.tune is not None and not self.context_k:
            raise ValueError(
                "tune: searches how passages are retrieved, and context_k is 0 (no "
                "retrieval); set context_k (e.g. 3) with a rag: section, or remove tune:"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Replaces PromptOptions._dump (pydantic keeps one serializer of a name): tune
        # enters a dump, and so a result key, only when set.
        out = self._drop_unset(handler(self))
        if out.get("tune", 0) is None:
            del out["tune"]
        return out

    def tuning_space(
        self, project: ProjectConfig | None = None
    ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(the default setting, the values ``tune:`` searches). The default holds
        ``context_k`` and, where ``tune:`` lists them, ``hybrid_weight`` and ``reranker``
        at ``project``'s ``rag:`` values (None without a project: the dry run's count)."""
        assert self.tune is not None
        rag = project.rag if project is not None else None
        space: dict[str, list[Any]] = dict(self.tune.space())
        default: dict[str, Any] = {"context_k": self.context_k}
        if "hybrid_weight" in space:
            default["hybrid_weight"] = rag.hybrid_weight if rag is not None else None
        if "reranker" in space:
            default["reranker"] = rag is not None and rag.reranker is not None
        if not space:
            k = self.context_k
            space["context_k"] = sorted({max(1, k // 2), min(50, 2 * k)} - {k}) or [k + 1]
        return default, space

    def check_project(self, project: ProjectConfig) -> tuple[tuple[str, ...], str, str] | None:
        """``(key under the candidate's params, problem, fix)`` where ``tune:`` asks for
        what the project's ``rag:`` cannot do; None when it fits."""
        if self.tune is None:
            return None
        rag = project.rag
        if rag is None:
            return (
                ("tune",),
                "tune: searches retrieval, and the project has no rag: section",
                "add rag: {docs: docs} to adaptlab.yaml, or remove tune:",
            )
        if self.tune.hybrid_weight is not None and rag.mode != "hybrid":
            return (
                ("tune", "hybrid_weight"),
                f"tune.hybrid_weight weighs the hybrid score, and rag.mode is '{rag.mode}'",
                "set rag.mode: hybrid, or remove hybrid_weight from tune:",
            )
        if self.tune.reranker is not None and rag.reranker is None:
            return (
                ("tune", "reranker"),
                "tune.reranker turns reranking on and off, and rag: names no reranker",
                "set rag.reranker to a cross-encoder (a folder or hub name), or remove "
                "reranker from tune:",
            )
        return None


class ZeroShotPromptOptions(ContextTunedOptions):
    shots: int = Field(default=0, ge=0, le=0, description="Zero-shot: no examples.")


class FewShotPromptOptions(ContextTunedOptions):
    shots: int = Field(default=8, ge=1, le=64, description="Examples shown in the prompt.")


class CoTPromptOptions(ContextTunedOptions):
    reasoning: bool = Field(default=True, description="Chain-of-thought (always on here).")
    shots: int = Field(default=0, ge=0, le=64, description="Examples shown in the prompt.")
