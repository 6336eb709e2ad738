"""Model backends behind one contract (see :mod:`adaptlab.backends.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptlab.backends.base import Backend, EncoderBackend
from adaptlab.registry import Registry

if TYPE_CHECKING:
    from adaptlab.config import ModelConfig


def _check(name: str, cls: type[Backend]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"backend '{name}' must be a subclass of adaptlab.backends.Backend")


BACKENDS: Registry[type[Backend]] = Registry("adaptlab.backends", "backend", _check)


def load_backend(model: ModelConfig) -> Backend:
    """Build the backend a project's ``model:`` section names (loads the model)."""
    cls = BACKENDS.get(model.backend)
    options = cls.Options.model_validate(model.model_dump(exclude={"backend"}))
    return cls(options)  # type: ignore[call-arg]


__all__ = ["BACKENDS", "Backend", "EncoderBackend", "load_backend"]
