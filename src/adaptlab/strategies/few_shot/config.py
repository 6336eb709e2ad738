from __future__ import annotations

from typing import Literal

from pydantic import Field

from adaptlab.strategies.base import StrategyOptions


class FewShotOptions(StrategyOptions):
    k: int = Field(default=8, ge=1, description="Examples per class (k-shot).")
    selector: Literal["stratified", "random"] = Field(
        default="stratified",
        description="'stratified' draws k per class; 'random' draws k x classes from all.",
    )
    classifier: Literal["logreg", "centroid"] = Field(
        default="logreg",
        description="Light model on the frozen embeddings: logistic regression (the MTEB "
        "protocol) or nearest class centroid.",
    )
    max_iter: int = Field(default=100, ge=10, description="Logistic-regression iterations.")
