from adaptlab.strategies.openai_finetune.config import OpenAIFinetuneOptions
from adaptlab.strategies.openai_finetune.strategy import OpenAIFinetune

__all__ = ["OpenAIFinetune", "OpenAIFinetuneOptions"]
