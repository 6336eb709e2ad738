"""Options of the generative prompting strategies (light to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from adaptlab.strategies.base import StrategyOptions

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
        out: dict[str, object] = handler(self)
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


class ZeroShotPromptOptions(PromptOptions):
    shots: int = Field(default=0, ge=0, le=0, description="Zero-shot: no examples.")


class FewShotPromptOptions(PromptOptions):
    shots: int = Field(default=8, ge=1, le=64, description="Examples shown in the prompt.")


class CoTPromptOptions(PromptOptions):
    reasoning: bool = Field(default=True, description="Chain-of-thought (always on here).")
    shots: int = Field(default=0, ge=0, le=64, description="Examples shown in the prompt.")
