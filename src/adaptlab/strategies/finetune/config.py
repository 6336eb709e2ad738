from __future__ import annotations

from pydantic import Field

from adaptlab.strategies.base import StrategyOptions
from adaptlab.train.options import EncoderTrainOptions


# How the encoder is trained (the trainer's options, in their order) and whether the
# tuned model is kept. No docstring: it would become the options' schema description.
class FinetuneOptions(EncoderTrainOptions, StrategyOptions):
    save_model: bool = Field(
        default=True, description="Save the best checkpoint in the project folder."
    )
