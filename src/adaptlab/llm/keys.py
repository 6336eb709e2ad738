"""API keys: from the user's environment or keys file, and only to servers the user chose.

The keys file (``$ADAPTLAB_KEYS_FILE``, default ``~/.config/adaptlab/keys.yaml``,
``chmod 600``) maps variable names to keys, and under ``send:`` binds a variable to
the servers that may receive it::

    OPENAI_API_KEY: sk-...
    AZURE_KEY: ...
    send:                # which servers may receive which key, beyond each provider's own
      AZURE_KEY: [https://myco.openai.azure.com]
      OPENAI_API_KEY: [http://127.0.0.1:8000]

A variable set in the environment wins over the same name in the file. ``send`` is
the one reserved name; the old form (``NAME: key`` lines only) still works.

The trust anchor is the user's own environment and keys file, never the project or
model folder: an ``adaptlab.yaml`` or a model folder may say which provider it needs
(``backend``, ``base_url``) and which variable it would like (``api_key_env``), but a
key read from variable V is sent to a server U only when (:func:`may_send`)

* V is the backend's own variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``) and U is
  that provider's own endpoint: the official one, or the one the user's environment
  sets (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``); or
* the keys file binds V to U's origin (``scheme://host:port``, compared exactly: a
  binding of ``https://a.com`` matches ``https://A.com:443/v1``, never
  ``https://a.com.evil.org``, ``http://a.com`` or ``https://a.com:8443``).

Otherwise the key is not read at all. A key is handed to the provider's client and
nowhere else; :func:`redact` scrubs every key read from any text (an error message, a
log line) before that text is shown or stored.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from adaptlab.core.errors import ConfigError
from adaptlab.core.files import read_regular_file
from adaptlab.core.urls import origin, url_problem

_SEEN: set[str] = set()
#: The keys file's one reserved name: the bindings of variables to servers.
SEND = "send"
_SHAPE = (
    "write one 'NAME: key' per line, and under 'send:' one 'NAME: [https://host:port]' "
    "per variable that may go to a server other than its provider's own"
)


def keys_file() -> Path:
    """``$ADAPTLAB_KEYS_FILE``, else ``~/.config/adaptlab/keys.yaml`` (may not exist)."""
    return Path(os.environ.get("ADAPTLAB_KEYS_FILE", "~/.config/adaptlab/keys.yaml")).expanduser()


#: A keys file is a few lines; anything larger is the wrong file, refused before it is read.
MAX_KEYS_FILE_BYTES = 1 << 20


def _read_keys_file() -> dict[str, Any]:
    """The keys file as a mapping ({} when there is none); raises ConfigError for a file
    that is not a YAML mapping."""
    file = keys_file()
    if not file.is_file():
        return {}
    raw = read_regular_file(
        file,
        max_bytes=MAX_KEYS_FILE_BYTES,
        limit_name="of a keys file",
        what="keys file",
        error=ConfigError,
        fix_path="point ADAPTLAB_KEYS_FILE at a file",
        size_fix="a keys file holds a few lines of 'NAME: key': check that "
        "ADAPTLAB_KEYS_FILE names the right file",
    )
    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"cannot read the keys file: {exc.__class__.__name__}", file=file, fix=_SHAPE
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("the keys file must map names to keys", file=file, fix=_SHAPE)
    if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        import warnings

        warnings.warn(f"{file} is readable by other users; run 'chmod 600 {file}'", stacklevel=3)
    return data


def find_key(var: str) -> str | None:
    """The key named ``var`` from the environment, else from the keys file; None if unset.

    This only reads: whether the key may go to a given server is :func:`may_send`'s
    question, asked before this is called.
    """
    value = os.environ.get(var)
    if not value and var != SEND:
        raw = _read_keys_file().get(var)
        value = str(raw) if isinstance(raw, str | int) and raw else None
    if value:
        _SEEN.add(value)
    return value or None


def bindings() -> dict[str, frozenset[str]]:
    """The keys file's ``send:`` section: variable -> origins it may be sent to.

    Raises ConfigError naming the keys file and the entry for a section of the wrong
    shape or a URL that is not a plain ``http(s)://host[:port]`` (see
    :func:`adaptlab.core.urls.url_problem`).
    """
    data = _read_keys_file()
    section = data.get(SEND)
    if section is None:
        return {}
    file = keys_file()
    if not isinstance(section, dict):
        raise ConfigError("'send:' must map variable names to lists of URLs", file=file, fix=_SHAPE)
    out: dict[str, frozenset[str]] = {}
    for var, urls in section.items():
        listed = [urls] if isinstance(urls, str) else urls
        if not isinstance(var, str) or not isinstance(listed, list):
            raise ConfigError(
                f"'send: {var}' must be a list of URLs", file=file, fix=f"send: {{{var}: [URL]}}"
            )
        origins = set()
        for i, url in enumerate(listed):
            problem = url_problem(url)
            if problem is not None:
                raise ConfigError(f"send.{var}[{i}] {problem.reason}", file=file, fix=problem.fix)
            origins.add(origin(url))
        out[var] = frozenset(origins)
    return out


def may_send(var: str, url: str, *, own_var: str | None, own_urls: Iterable[str]) -> bool:
    """Whether the key in ``var`` may go to ``url``.

    ``own_var`` is the backend's own variable and ``own_urls`` its provider's endpoints
    (the official one and any the user's environment names); URLs are compared by
    :func:`~adaptlab.core.urls.origin`. A URL that cannot be read gets no key.
    """
    try:
        target = origin(url)
    except ValueError:
        return False
    if var == own_var:
        for own in own_urls:
            try:
                if origin(own) == target:
                    return True
            except ValueError:
                continue
    return target in bindings().get(var, frozenset())


def send_fix(var: str, url: str) -> str:
    """What to add to the keys file to let ``var`` go to ``url``'s server."""
    try:
        where = origin(url)
    except ValueError:
        where = "https://HOST:PORT"
    return (
        f"if you trust {where} with {var}, add to the keys file {keys_file()}: "
        f"'send: {{{var}: [{where}]}}' (under an existing 'send:', the line "
        f"'{var}: [{where}]')"
    )


def redact(text: str) -> str:
    """Replace every key this process has loaded with a placeholder."""
    for key in _SEEN:
        if key and len(key) >= 4:
            text = text.replace(key, "[redacted]")
    return text


__all__ = ["SEND", "bindings", "find_key", "keys_file", "may_send", "redact", "send_fix"]
