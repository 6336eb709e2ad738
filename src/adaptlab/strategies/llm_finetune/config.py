"""Options of the local LLM fine-tuning strategy (light to import)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from adaptlab.strategies.prompting.config import PromptOptions
from adaptlab.strategies.tuning import (
    PositiveFloat,
    PositiveInt,
    Tunable,
    TuneOptions,
    check_values,
)
from adaptlab.train.options import TrainOptions


class LoraTune(TuneOptions):
    """``tune:`` of an llm-finetune candidate: the values searched besides its own.

    A list left out is searched around the candidate's value: the learning rate at a
    third and three times it, the LoRA rank at half and twice it (lora/qlora only).
    ``epochs`` is the resource of successive halving (a setting first trains a
    fraction of its epochs) and early stopping keeps each trial's best checkpoint;
    list ``epochs`` to search the maximum too.
    """

    learning_rate: list[PositiveFloat] | None = Field(
        default=None,
        description="Peak learning rates to try; default: the candidate's /3 and x3.",
    )
    epochs: list[PositiveFloat] | None = Field(
        default=None, description="Maximum epochs to try (early stopping may end sooner)."
    )
    lora_r: list[PositiveInt] | None = Field(
        default=None,
        description="LoRA ranks to try (lora_alpha scales with the rank, so alpha/r stays "
        "the candidate's); default: the candidate's /2 and x2.",
    )

    @field_validator("learning_rate", "epochs", "lora_r")
    @classmethod
    def _values(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        check_values(str(info.field_name), value)
        return value


class LLMFinetuneOptions(Tunable, PromptOptions, TrainOptions):
    """The prompt the model is trained and asked with, and how it is trained.

    The prompt options are those of the prompting strategies (``template``, ``system``,
    ``shots`` for a hybrid with examples in the prompt, …); the training options are
    :class:`~adaptlab.train.options.TrainOptions`.
    """

    template: str = Field(
        default="auto",
        description="'auto' (classify-short for classification: label names only, since "
        "training teaches the rest; the task's built-in otherwise), a built-in name, or a "
        ".j2 file relative to the project folder. Training and answering use the same one.",
    )
    shots: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Examples shown in each prompt (a hybrid of fine-tuning and few-shot); "
        "training prompts show them too.",
    )
    evaluate: Literal["best", "best-and-last"] = Field(
        default="best-and-last",
        description="Answer the test split with the checkpoint of the best validation loss; "
        "'best-and-last' also answers with the last checkpoint for the overfitting report.",
    )
    tune: LoraTune | None = Field(
        default=None,
        description="Search learning rate x epochs x LoRA rank on the validation split by "
        "successive halving within max_minutes; the test split is answered by the best.",
    )

    @model_validator(mode="after")
    def _rank_needs_lora(self) -> LLMFinetuneOptions:
        if self.tune is not None and self.tune.lora_r and self.method == "full":
            raise ValueError(
                "tune.lora_r is set, but method is 'full' (no LoRA rank); remove lora_r from "
                "tune: or set method: lora"
            )
        return self

    def tuning_space(self) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(the default setting, the values searched) of ``tune:``; a list left out is
        searched around the candidate's own value (learning rate /3 and x3, rank /2 and
        x2)."""
        assert self.tune is not None
        tune = self.tune
        lr = self.lr
        default: dict[str, Any] = {"learning_rate": lr, "epochs": self.epochs}
        space: dict[str, list[Any]] = {
            "learning_rate": list(tune.learning_rate or [lr / 3, lr * 3])
        }
        if tune.epochs:
            space["epochs"] = list(tune.epochs)
        if self.method != "full":
            default["lora_r"] = self.lora_r
            space["lora_r"] = list(tune.lora_r or [max(1, self.lora_r // 2), self.lora_r * 2])
        return default, space
