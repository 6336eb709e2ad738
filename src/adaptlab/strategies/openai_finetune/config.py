"""Options of the OpenAI fine-tuning strategy (light to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from adaptlab.strategies.prompting.config import PromptOptions


class OpenAIFinetuneOptions(PromptOptions):
    """The prompt options (the template the model is trained and asked with) and the job's.

    Hyperparameters left at "auto" are chosen by the provider (OpenAI picks epochs from
    the file's size; see :func:`adaptlab.train.cost.default_epochs`).
    """

    shots: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Examples shown in the prompt; a fine-tuned model usually needs none, "
        "and every shot is paid for in every training example.",
    )
    n_epochs: int | Literal["auto"] = Field(
        default="auto", description="Passes over the training file (1-50) or 'auto'."
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto", description="Examples per training step (1-256) or 'auto'."
    )
    learning_rate_multiplier: float | Literal["auto"] = Field(
        default="auto",
        description="Scales the provider's learning rate (0-10, exclusive of 0) or 'auto'.",
    )
    suffix: str | None = Field(
        default=None,
        max_length=64,
        description="Up to 64 characters in the fine-tuned model's name (ft:MODEL:ORG:SUFFIX:ID).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        description="The job's seed; default the project's seed, so reruns train alike.",
    )
    validation: bool = Field(
        default=True,
        description="Send the validation split as the job's validation file (validation "
        "loss curves; not billed).",
    )
    max_usd: float | None = Field(
        default=None,
        ge=0,
        description="Refuse to start a job whose estimated training cost is higher (or "
        "unknown); null starts any.",
    )
    poll_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds between status polls while the job runs.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> OpenAIFinetuneOptions:
        checks = (
            ("n_epochs", self.n_epochs, 1, 50),
            ("batch_size", self.batch_size, 1, 256),
        )
        for name, value, low, high in checks:
            if value != "auto" and not low <= int(value) <= high:
                raise ValueError(f"{name} must be {low}-{high} or 'auto', got {value}")
        lr = self.learning_rate_multiplier
        if lr != "auto" and not 0 < float(lr) <= 10:
            raise ValueError(f"learning_rate_multiplier must be in (0, 10] or 'auto', got {lr}")
        return self
