"""Options of the local LLM fine-tuning strategy (light to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adaptlab.strategies.prompting.config import PromptOptions
from adaptlab.train.options import TrainOptions


class LLMFinetuneOptions(PromptOptions, TrainOptions):
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
