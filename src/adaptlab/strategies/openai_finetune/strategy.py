"""Fine-tuning a model at OpenAI (a provider job) and prompting the result."""

from __future__ import annotations

from typing import ClassVar

from adaptlab.strategies.base import StrategyOptions
from adaptlab.strategies.openai_finetune.config import OpenAIFinetuneOptions
from adaptlab.strategies.prompting.strategy import PromptStrategy


class OpenAIFinetune(PromptStrategy):
    """A provider fine-tuning job on the candidate's OpenAI model (work in progress)."""

    name: ClassVar[str] = "openai-finetune"
    Options: ClassVar[type[StrategyOptions]] = OpenAIFinetuneOptions
