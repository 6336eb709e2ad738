"""The strategy registry (entry-point group ``adaptlab.strategies``)."""

from __future__ import annotations

from adaptlab.core.registry import Registry
from adaptlab.strategies.base import Strategy, StrategyOptions


def _check(name: str, cls: type[Strategy]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"strategy '{name}' must subclass adaptlab.strategies.Strategy")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, StrategyOptions)):
        raise TypeError(f"strategy '{name}' needs an Options class subclassing StrategyOptions")


STRATEGIES: Registry[type[Strategy]] = Registry("adaptlab.strategies", "strategy", _check)


def get_strategy(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)
