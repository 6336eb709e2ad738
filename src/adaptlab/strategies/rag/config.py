from __future__ import annotations

from typing import Literal

from pydantic import Field

from adaptlab.strategies.base import StrategyOptions


class RagOptions(StrategyOptions):
    top_k: int = Field(default=10, ge=1, description="Labelled neighbours retrieved per input.")
    weighting: Literal["similarity", "uniform"] = Field(
        default="similarity",
        description="How neighbours vote: weighted by cosine similarity, or one vote each.",
    )
    include_val: bool = Field(
        default=True, description="Index the validation split too (nothing trains on it here)."
    )
