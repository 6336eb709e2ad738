from adaptlab.strategies.tfidf.config import TfidfOptions
from adaptlab.strategies.tfidf.strategy import TfidfLogReg

__all__ = ["TfidfLogReg", "TfidfOptions"]
