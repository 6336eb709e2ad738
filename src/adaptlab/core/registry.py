"""Registries that check what they are given, filled from entry points.

Built-ins register through the same entry-point groups a third-party plugin uses
(``adaptlab.strategies``, ``adaptlab.backends``), so the core extends itself
exactly as a plugin would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


class Registry(Generic[T]):
    """Name -> class, loaded lazily from one entry-point group."""

    def __init__(self, group: str, kind: str, check: Callable[[str, T], None]) -> None:
        self.group = group
        self.kind = kind
        self._check = check
        self._items: dict[str, T] = {}
        self._pending: dict[str, object] = {}
        self._scanned = False

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        if not _NAME.match(name):
            raise ValueError(
                f"{self.kind} name '{name}' is malformed: use lower-case letters, digits "
                "and single '-' or '_' (e.g. 'few-shot')"
            )
        if not replace and name in self._items and self._items[name] is not item:
            raise ValueError(
                f"{self.kind} '{name}' is already registered by "
                f"{_qualname(self._items[name])}; pick another name or pass replace=True"
            )
        self._check(name, item)
        self._items[name] = item
        return item

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            self._pending.setdefault(ep.name, ep)

    def get(self, name: str) -> T:
        self._scan()
        if name not in self._items and name in self._pending:
            ep = self._pending.pop(name)
            self.register(name, ep.load())  # type: ignore[attr-defined]
        if name not in self._items:
            known = ", ".join(self.names()) or "none installed"
            raise KeyError(f"unknown {self.kind} '{name}' (known: {known})")
        return self._items[name]

    def names(self) -> list[str]:
        self._scan()
        return sorted(set(self._items) | set(self._pending))


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
