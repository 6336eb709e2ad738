from __future__ import annotations

from typing import Literal

from pydantic import Field

from adaptlab.strategies.base import StrategyOptions


class FinetuneOptions(StrategyOptions):
    method: Literal["head", "setfit"] = Field(
        default="head",
        description="'head': train encoder and a softmax head end to end (cross-entropy); "
        "'setfit': contrastive pairs tune the encoder, then a logistic-regression head.",
    )
    epochs: int = Field(default=8, ge=1, description="Maximum epochs over the train split.")
    batch_size: int = Field(default=16, ge=2, description="Examples (or pairs) per step.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Encoder learning rate.")
    head_learning_rate: float = Field(default=2e-3, gt=0, description="Head learning rate.")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of linear warm-up.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    patience: int = Field(
        default=2, ge=1, description="Epochs without a better val accuracy before stopping."
    )
    pair_iterations: int = Field(
        default=5, ge=1, description="setfit only: positive and negative pairs per example."
    )
    save_model: bool = Field(
        default=True, description="Save the best checkpoint in the project folder."
    )
