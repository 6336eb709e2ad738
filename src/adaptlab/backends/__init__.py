"""Model backends behind one contract (see :mod:`adaptlab.backends.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptlab.backends.base import Backend, EncoderBackend, GenerativeBackend
from adaptlab.core.errors import ConfigError
from adaptlab.core.registry import Registry
from adaptlab.llm.keys import find_key

if TYPE_CHECKING:
    from adaptlab.config import LLMConfig, ModelConfig


def _check(name: str, cls: type[Backend]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"backend '{name}' must be a subclass of adaptlab.backends.Backend")


BACKENDS: Registry[type[Backend]] = Registry("adaptlab.backends", "backend", _check)


def load_backend(model: ModelConfig) -> Backend:
    """Build the backend a project's ``model:`` section names (loads the model)."""
    cls = BACKENDS.get(model.backend)
    options = cls.Options.model_validate(model.model_dump(exclude={"backend"}))
    return cls(options)  # type: ignore[call-arg]


def llm_key_var(config: LLMConfig) -> str | None:
    """The variable that holds this model's key, or None when it needs none."""
    cls = BACKENDS.get(config.backend)
    if config.api_key_env:
        return config.api_key_env
    if not cls.needs_key:
        return None
    return cls.key_env_var


def load_llm(config: LLMConfig, *, require_key: bool = True) -> GenerativeBackend:
    """Build the generative backend of an ``llms:`` entry, with its key if it needs one.

    A local OpenAI-compatible server (``base_url`` set) gets a placeholder key
    when none is set, since the official client insists on one.
    """

    cls = BACKENDS.get(config.backend)
    if not issubclass(cls, GenerativeBackend):
        raise ConfigError(
            f"backend '{config.backend}' is not a generative model",
            fix="use 'openai', 'anthropic' or 'hf' under llms:",
        )
    var = llm_key_var(config)
    key = find_key(var) if var else None
    if key is None and var and require_key and config.base_url is None:
        raise ConfigError(
            f"no API key for {config.backend} model '{config.name}'",
            fix=f"export {var}=... or add '{var}: ...' to the keys file "
            "(~/.config/adaptlab/keys.yaml); for a local server set base_url",
        )
    return cls(config, key)


__all__ = [
    "BACKENDS",
    "Backend",
    "EncoderBackend",
    "GenerativeBackend",
    "llm_key_var",
    "load_backend",
    "load_llm",
]
