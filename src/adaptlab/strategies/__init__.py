"""Adaptation strategies; one folder each, registered through entry points."""

from adaptlab.core.progress import ProgressSink
from adaptlab.core.types import CurvePoint, Prediction
from adaptlab.strategies.base import Strategy, StrategyContext, StrategyOptions
from adaptlab.strategies.registry import STRATEGIES, get_strategy

__all__ = [
    "STRATEGIES",
    "CurvePoint",
    "Prediction",
    "ProgressSink",
    "Strategy",
    "StrategyContext",
    "StrategyOptions",
    "get_strategy",
]
