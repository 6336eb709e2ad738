from __future__ import annotations

from pydantic import Field

from adaptlab.strategies.base import StrategyOptions


class TfidfOptions(StrategyOptions):
    max_features: int = Field(
        default=50_000, ge=100, description="Vocabulary size (most frequent n-grams)."
    )
    ngram_max: int = Field(default=2, ge=1, le=3, description="Longest word n-gram.")
    char_ngrams: bool = Field(
        default=True,
        description="Add character 2-5-grams within word boundaries (robust to typos, "
        "compounds and inflection, as in German).",
    )
    c_grid: list[float] = Field(
        default=[0.1, 1.0, 10.0],
        min_length=1,
        description="Inverse regularisation strengths tried; the one with the best "
        "validation accuracy is kept (the first on a tie, or when there is no val split).",
    )
    max_iter: int = Field(default=1000, ge=10, description="Logistic-regression iterations.")
