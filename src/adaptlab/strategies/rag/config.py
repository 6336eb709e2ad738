from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from adaptlab.strategies.base import StrategyOptions
from adaptlab.strategies.tuning import PositiveInt, Tunable, TuneOptions, check_values


class RagTune(TuneOptions):
    """``tune:`` of a rag candidate: neighbours and voting searched on the validation split
    (each validation input votes among the train examples only). Every setting is
    scored (a grid: a trial trains nothing); a list left out keeps the candidate's value,
    and with neither list set ``top_k`` is searched over 1, 3, 5, 10, 20 and 50."""

    top_k: list[PositiveInt] | None = Field(
        default=None, description="Neighbours per input to try."
    )
    weighting: list[Literal["similarity", "uniform"]] | None = Field(
        default=None, description="Voting rules to try."
    )

    @field_validator("top_k", "weighting")
    @classmethod
    def _values(cls, value: list[object] | None, info: ValidationInfo) -> list[object] | None:
        check_values(str(info.field_name), value)
        return value


class RagOptions(Tunable, StrategyOptions):
    top_k: int = Field(default=10, ge=1, description="Labelled neighbours retrieved per input.")
    weighting: Literal["similarity", "uniform"] = Field(
        default="similarity",
        description="How neighbours vote: weighted by cosine similarity, or one vote each.",
    )
    include_val: bool = Field(
        default=True, description="Index the validation split too (nothing trains on it here)."
    )
    tune: RagTune | None = Field(
        default=None,
        description="Choose top_k and weighting on the validation split within max_minutes; "
        "the test split is answered with the best.",
    )

    #: Trials train nothing: every setting is scored (a grid, not successive halving).
    tune_halving: ClassVar[bool] = False

    def tuning_space(self) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(the default setting, the values ``tune:`` searches: its lists, or top_k's
        default grid)."""
        assert self.tune is not None
        space: dict[str, list[Any]] = dict(self.tune.space())
        if not space:
            space["top_k"] = [1, 3, 5, 10, 20, 50]
        return {"top_k": self.top_k, "weighting": self.weighting}, space
