from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from adaptlab.strategies.base import StrategyOptions
from adaptlab.strategies.tuning import PositiveFloat, Tunable, TuneOptions, check_values
from adaptlab.train.options import EncoderTrainOptions


class EncoderTune(TuneOptions):
    """``tune:`` of a finetune candidate: the encoder learning rates searched besides its
    own (default: a third and three times it); epochs are the halving's resource."""

    learning_rate: list[PositiveFloat] | None = Field(
        default=None,
        description="Encoder learning rates to try; default: the candidate's /3 and x3.",
    )

    @field_validator("learning_rate")
    @classmethod
    def _values(cls, value: list[float] | None) -> list[float] | None:
        check_values("learning_rate", value)
        return value


# How the encoder is trained (the trainer's options, in their order) and whether the
# tuned model is kept. No docstring: it would become the options' schema description.
class FinetuneOptions(Tunable, EncoderTrainOptions, StrategyOptions):
    save_model: bool = Field(
        default=True, description="Save the best checkpoint in the project folder."
    )
    tune: EncoderTune | None = Field(
        default=None,
        description="Search the learning rate on the validation split by successive halving "
        "within max_minutes; the test split is answered by the best.",
    )

    def tuning_space(self) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(the default setting, the learning rates searched: tune's list, or /3 and x3)."""
        assert self.tune is not None
        lr = self.learning_rate
        default = {"learning_rate": lr, "epochs": self.epochs}
        return default, {"learning_rate": list(self.tune.learning_rate or [lr / 3, lr * 3])}
