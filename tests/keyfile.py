"""A keys file for tests: keys and the servers each may be sent to, as a user writes them.

adaptlab sends a key to a server other than its provider's own only where the keys
file binds it (``send:``, see :mod:`adaptlab.llm.keys`); a test whose fake server on
127.0.0.1 must receive a key binds it here, the way a user would.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def bind_key(var: str, *urls: str, key: str | None = None) -> Path:
    """Let ``var`` go to ``urls`` (and store ``key`` under ``var``) in the keys file that
    ``$ADAPTLAB_KEYS_FILE`` names; entries already there are kept. Returns the file."""
    file = Path(os.environ["ADAPTLAB_KEYS_FILE"])
    data = yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else None
    data = data or {}
    if key is not None:
        data[var] = key
    send = data.setdefault("send", {})
    send[var] = sorted({*send.get(var, []), *urls})
    file.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    file.chmod(0o600)
    return file
