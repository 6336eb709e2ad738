"""Model backends behind one contract (see :mod:`adaptlab.backends.base`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from adaptlab.backends.base import Backend, EncoderBackend, GenerativeBackend
from adaptlab.core.errors import ConfigError
from adaptlab.core.registry import Registry
from adaptlab.core.urls import origin
from adaptlab.llm.keys import find_key, keys_file, may_send, send_fix

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


def _endpoint(cls: type[Backend], config: LLMConfig) -> str | None:
    """Where this model's requests go: ``base_url``, else the endpoint the user's
    environment sets, else the provider's own; None when the backend alone knows."""
    if config.base_url is not None:
        return config.base_url
    moved = os.environ.get(cls.key_url_env_var) if cls.key_url_env_var else None
    return moved or cls.key_url


def _own_urls(cls: type[Backend]) -> list[str]:
    """The provider's own endpoints: the official one and the one the user's environment
    names (``OPENAI_BASE_URL``): where ``key_env_var``'s key goes without a binding."""
    moved = os.environ.get(cls.key_url_env_var) if cls.key_url_env_var else None
    return [u for u in (cls.key_url, moved) if u]


def key_refusal(
    config: LLMConfig,
    *,
    file: str | Path | None = None,
    key: str = "api_key_env",
    line: int | None = None,
) -> ConfigError | None:
    """The error for an ``api_key_env`` that names a variable the user has not let go to
    this model's endpoint (see :mod:`adaptlab.llm.keys`), else None.

    ``file``, ``key`` and ``line`` say where the entry was written (``adaptlab.yaml``
    and ``llms.chat.api_key_env``; a model folder's ``manifest.json`` and
    ``llm.api_key_env``). Reads the keys file's ``send:`` section (a malformed one
    raises ConfigError), never a key.
    """
    var = config.api_key_env
    if var is None:
        return None
    cls = BACKENDS.get(config.backend)
    endpoint = _endpoint(cls, config)
    if endpoint is not None and may_send(
        var, endpoint, own_var=cls.key_env_var, own_urls=_own_urls(cls)
    ):
        return None
    if endpoint is None:
        return ConfigError(
            f"{key} names {var}, but backend '{config.backend}' has no endpoint a key "
            "could be bound to",
            file=file,
            line=line,
            fix="remove 'api_key_env'"
            + (f"; this backend reads its key from {cls.key_env_var}" if cls.key_env_var else ""),
        )
    try:
        where = origin(endpoint)
    except ValueError:
        where = "its base_url"
    return ConfigError(
        f"{key} names {var} for {where}: a project or model folder may not choose which "
        "secret is sent where",
        file=file,
        line=line,
        fix=f"{send_fix(var, endpoint)}; otherwise remove 'api_key_env'",
    )


def llm_key_var(config: LLMConfig) -> str | None:
    """The variable whose key may go to this model's endpoint, or None when none may.

    ``api_key_env`` is used only where the user's keys file allows it (else
    :func:`key_refusal`'s ConfigError is raised); the backend's own variable
    (``OPENAI_API_KEY``) only for its provider's own endpoint or where the keys file
    binds it: a ``base_url`` elsewhere gets no key (None).
    """
    cls = BACKENDS.get(config.backend)
    if config.api_key_env:
        refused = key_refusal(config)
        if refused is not None:
            raise refused
        return config.api_key_env
    var = cls.key_env_var
    if not cls.needs_key or var is None:
        return None
    endpoint = _endpoint(cls, config)
    if endpoint is None:  # the backend's own fixed endpoint: no folder chose it
        return var
    return var if may_send(var, endpoint, own_var=var, own_urls=_own_urls(cls)) else None


def withheld_key_fix(config: LLMConfig, *, sent: bool) -> str | None:
    """For a server that refused a request (HTTP 401/403) to which no key was ``sent``
    although the user has one (its provider's own variable, withheld because this is
    not the provider's endpoint): how to bind the key to it. None in every other case,
    where the backend's own hint applies."""
    cls = BACKENDS.get(config.backend)
    var = cls.key_env_var
    endpoint = _endpoint(cls, config)
    if sent or config.api_key_env or not var or not endpoint:
        return None
    if may_send(var, endpoint, own_var=var, own_urls=_own_urls(cls)) or not find_key(var):
        return None
    return (
        f"adaptlab sent no key to this server: {var} goes to its provider's own endpoint "
        f"only; {send_fix(var, endpoint)}"
    )


def load_llm(config: LLMConfig, *, require_key: bool = True) -> GenerativeBackend:
    """Build the generative backend of an ``llms:`` entry, with its key if it may have one.

    The key is the one :func:`llm_key_var` allows for this endpoint. Without one, a
    ``base_url`` server gets a placeholder, since the official clients insist on a key
    (a local server without auth keeps working). Raises ConfigError for a backend that
    is not generative, an ``api_key_env`` the user has not bound to this endpoint, and
    (``require_key``) a provider's own endpoint with no key set.
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
            f"({keys_file()}); for a local server set base_url",
        )
    return cls(config, key)


__all__ = [
    "BACKENDS",
    "Backend",
    "EncoderBackend",
    "GenerativeBackend",
    "key_refusal",
    "llm_key_var",
    "load_backend",
    "load_llm",
    "withheld_key_fix",
]
