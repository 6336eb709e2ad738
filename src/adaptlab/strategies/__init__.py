"""Adaptation strategies; one folder each, registered through entry points."""

from adaptlab.strategies.base import (
    CurvePoint,
    Prediction,
    ProgressSink,
    Strategy,
    StrategyContext,
    StrategyOptions,
)
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
