"""Options of the OpenAI fine-tuning strategy (light to import)."""

from __future__ import annotations

from pydantic import Field

from adaptlab.strategies.prompting.config import PromptOptions


class OpenAIFinetuneOptions(PromptOptions):
    shots: int = Field(default=0, ge=0, le=64, description="Examples shown in the prompt.")
