from adaptlab.strategies.rag.config import RagOptions
from adaptlab.strategies.rag.strategy import Rag

__all__ = ["Rag", "RagOptions"]
