"""Options of the generative prompting strategies (light to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from adaptlab.strategies.base import StrategyOptions


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
        return self

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
