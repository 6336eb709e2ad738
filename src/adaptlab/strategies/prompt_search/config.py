"""Options of ``strategy: prompt-search`` (light to import).

The candidate's own prompt options (template, system, shots, selector, answer, …) are
its *unoptimised* prompt, the base every trial is compared with; ``space`` says what
the search may change, and ``max_calls`` / ``max_usd`` / ``max_minutes`` bound it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adaptlab.strategies.prompting.config import PromptOptions

Selector = Literal["stratified", "random", "similar", "mmr"]
AnswerMode = Literal["constrained", "free"]
SELECTORS: list[Selector] = ["stratified", "random", "similar", "mmr"]
ANSWER_MODES: list[AnswerMode] = ["constrained", "free"]


class SearchSpace(BaseModel):
    """What the prompt search may change; each list is one dimension of the grid."""

    model_config = ConfigDict(extra="forbid")

    templates: list[str] = Field(
        default_factory=lambda: ["auto", "classify-short"],
        description="Instruction variants: built-in templates ('auto' = classify, "
        "'classify-short') in the data's language, and your own .j2 files (relative to the "
        "project folder). Where the data is not English, the English built-ins are tried too.",
    )
    instructions: list[str] = Field(
        default_factory=list,
        description="Your own system prompts, each tried in place of the template's system "
        "part (besides the template's own).",
    )
    shots: list[int] = Field(
        default_factory=lambda: [0, 2, 4, 8],
        description="Numbers of demonstrations (drawn from the train split, never validation).",
    )
    selectors: list[Selector] = Field(
        default_factory=lambda: list(SELECTORS),
        description="How demonstrations are picked (see the prompting candidates' selector).",
    )
    answers: list[AnswerMode] = Field(
        default_factory=lambda: list(ANSWER_MODES),
        description="Answer modes tried; 'constrained' is left out where the backend "
        "cannot constrain answers (with a note).",
    )
    temperatures: list[float] = Field(
        default_factory=lambda: [0.0],
        description="Sampling temperatures tried for free-text answers (a constrained "
        "answer does not sample, so it is tried at the candidate's own temperature).",
    )
    rewrites: int = Field(
        default=0,
        ge=0,
        le=32,
        description="System instructions an LLM (the proposer) writes, each tried as one "
        "more setting: half from a summary of the task (label names and descriptions, a "
        "few train examples), the rest after the first round as rewrites of the best "
        "prompt from its validation failures (GEPA-style). Each is one paid call.",
    )
    proposer: str | None = Field(
        default=None,
        description="Entry under 'llms:' that writes the rewrites; by default the "
        "candidate's own llm where it is an API model (a local model is not asked to "
        "write prompts unless named here).",
    )
    proposer_max_tokens: int = Field(
        default=400,
        ge=32,
        le=4096,
        description="Output tokens of one proposer call (the printed maximum counts them).",
    )

    @field_validator("templates", "shots", "selectors", "answers", "temperatures")
    @classmethod
    def _not_empty(cls, v: list[object]) -> list[object]:
        if not v:
            raise ValueError("must list at least one value (or leave the key out)")
        if len(set(map(repr, v))) != len(v):
            raise ValueError(f"lists a value twice: {v}")
        return v

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        bad = [k for k in v if not 0 <= k <= 64]
        if bad:
            raise ValueError(f"numbers of demonstrations must be 0 to 64, not {bad}")
        return v

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        bad = [t for t in v if not 0 <= t <= 2]
        if bad:
            raise ValueError(f"temperatures must be 0 to 2, not {bad}")
        return v

    @model_validator(mode="after")
    def _proposer(self) -> SearchSpace:
        if self.proposer is not None and self.rewrites == 0:
            raise ValueError(
                f"proposer '{self.proposer}' is set but rewrites is 0: set rewrites (e.g. 4) "
                "or remove proposer"
            )
        return self

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("an instruction is empty; remove it or write the system prompt")
        return v


class PromptSearchOptions(PromptOptions):
    """A prompted candidate whose prompt is searched on the validation split."""

    space: SearchSpace = Field(
        default_factory=SearchSpace, description="What the search may change."
    )
    max_trials: int = Field(
        default=12,
        ge=1,
        le=200,
        description="Settings drawn from the space (seeded; the unoptimised prompt is "
        "always one of them).",
    )
    min_examples: int = Field(
        default=16,
        ge=2,
        description="Validation inputs of the first successive-halving round (minibatch).",
    )
    eta: int = Field(
        default=2,
        ge=2,
        le=8,
        description="Successive halving: each round keeps 1/eta of the settings and gives "
        "them eta times the validation inputs (Jamieson & Talwalkar 2016).",
    )
    shortlist: int = Field(
        default=2, ge=1, description="Settings answered on the full validation split."
    )
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="The searched prompt replaces the unoptimised one only where an exact "
        "McNemar test on the validation split gives p < alpha and it is more accurate.",
    )
    max_calls: int | None = Field(
        default=None,
        ge=1,
        description="Hard cap on the requests the search sends (each retry counts; answers "
        "from the response cache do not). Answering the test split afterwards is not part "
        "of the search (adaptlab run --dry-run shows both).",
    )
    max_usd: float | None = Field(
        default=None,
        gt=0,
        description="Hard cap on the search's API cost in USD, from the price table "
        "(src/adaptlab/llm/prices.yaml) or llms.<name>.prices: a request is sent only "
        "where its worst case (prompt + max_tokens) still fits.",
    )
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Wall-clock cap on the search: no request (or local batch) starts that "
        "is expected to end after it.",
    )

    @model_validator(mode="after")
    def _rounds(self) -> PromptSearchOptions:
        if self.shortlist > self.max_trials:
            raise ValueError(
                f"shortlist ({self.shortlist}) is larger than max_trials ({self.max_trials}); "
                "lower shortlist or raise max_trials"
            )
        return self
