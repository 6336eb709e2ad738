from adaptlab.strategies.llm_finetune.strategy import LLMFinetune

__all__ = ["LLMFinetune"]
