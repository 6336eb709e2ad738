from adaptlab.strategies.prompt_search.config import PromptSearchOptions, SearchSpace
from adaptlab.strategies.prompt_search.strategy import PromptSearch

__all__ = ["PromptSearch", "PromptSearchOptions", "SearchSpace"]
