from adaptlab.strategies.prompting.strategy import (
    LLMChainOfThought,
    LLMFewShot,
    LLMZeroShot,
    PromptStrategy,
)

__all__ = ["LLMChainOfThought", "LLMFewShot", "LLMZeroShot", "PromptStrategy"]
