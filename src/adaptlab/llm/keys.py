"""API keys: from the environment or a keys file, never from adaptlab.yaml.

The keys file (``$ADAPTLAB_KEYS_FILE``, default ``~/.config/adaptlab/keys.yaml``)
maps variable names to keys, e.g. ``OPENAI_API_KEY: sk-...``. A key is handed to
the provider's client and nowhere else; :func:`redact` scrubs it from any text
(an error message, a log line) before that text is shown or stored.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from adaptlab.core.errors import ConfigError

_SEEN: set[str] = set()


def keys_file() -> Path:
    return Path(os.environ.get("ADAPTLAB_KEYS_FILE", "~/.config/adaptlab/keys.yaml")).expanduser()


def find_key(var: str) -> str | None:
    """The key named ``var`` from the environment, else from the keys file."""
    value = os.environ.get(var)
    if not value:
        file = keys_file()
        if file.is_file():
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(
                    f"cannot read the keys file: {exc.__class__.__name__}",
                    file=file,
                    fix="it must be YAML mapping names to keys, e.g. 'OPENAI_API_KEY: sk-...'",
                ) from None
            if not isinstance(data, dict):
                raise ConfigError(
                    "the keys file must map names to keys",
                    file=file,
                    fix="write one 'NAME: key' per line",
                )
            if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                import warnings

                warnings.warn(
                    f"{file} is readable by other users; run 'chmod 600 {file}'", stacklevel=2
                )
            raw = data.get(var)
            value = str(raw) if raw else None
    if value:
        _SEEN.add(value)
    return value or None


def redact(text: str) -> str:
    """Replace every key this process has loaded with a placeholder."""
    for key in _SEEN:
        if key and len(key) >= 4:
            text = text.replace(key, "[redacted]")
    return text
