"""What the server's access log may show of a request line: never a query string's values.

A client that puts its API key in the URL (``GET /v1/models?api-key=sk-…``, as some
SDKs and proxies do) would otherwise have it printed whole by uvicorn's access log.
adaptlab's API reads no query parameter, so every value is replaced, whatever its name
(a list of names that look secret would always trail the next one): the parameter
names stay for debugging, a bare token without ``=`` is replaced too.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

REDACTED = "<redacted>"


def redact_query(path: str) -> str:
    """``path`` with every query value replaced by :data:`REDACTED`:
    ``/v1/models?api-key=sk-1&x`` → ``/v1/models?api-key=<redacted>&<redacted>``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if eq else (REDACTED if pair else pair))
    return f"{base}?{'&'.join(parts)}"


class RedactQuery(logging.Filter):
    """Rewrites the path of uvicorn's access-log records (its third argument:
    ``client, method, path, http_version, status``) with :func:`redact_query`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with :class:`RedactQuery` on the access
    log's handler (pass it as ``uvicorn.run(..., log_config=...)``)."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuery}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query")
    return config
