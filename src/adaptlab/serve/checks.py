"""What one request may carry, checked before it reaches a model, a batch or the log.

JSON can spell text that is not Unicode: ``"\\ud800"`` decodes to a lone surrogate,
which no tokenizer, HTTP client or SQLite column can encode. Such a string, or a NUL
character (which C libraries read as the end of the text), anywhere in a body is refused
with 400 naming the field, so it never joins a batch with other requests; and every
response is encoded so that no text in it can make the encoding fail.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting of lists and objects walked in a body (a body is at most 1 MiB).
MAX_DEPTH = 64


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be served, or None: a lone surrogate or a NUL, by position."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"is not valid Unicode: character {exc.start} is a lone surrogate "
            f"({ascii(text[exc.start])[1:-1]}), which UTF-8 cannot encode"
        )
    at = text.find("\0")
    if at >= 0:
        return f"holds a NUL character (\\u0000) at character {at}"
    return None


def find_bad_text(value: Any, where: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first string in ``value`` (a parsed JSON body: dicts, lists, scalars; object
    keys included) that :func:`text_problem` refuses, as ``(param, problem)``; ``param``
    is its path, e.g. ``messages.0.content``. None when every string is fine."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (where or "body", problem)
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            path = f"{where}.{_shown(name)}" if where else _shown(name)
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                return path, f"has a field name that {problem}"
            found = find_bad_text(item, path, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = find_bad_text(item, f"{where}.{i}" if where else str(i), depth + 1)
            if found is not None:
                return found
    return None


def _shown(name: str) -> str:
    """A field name as it can be printed: escaped when it is not valid text."""
    return name if text_problem(name) is None else ascii(name)[1:-1]


def utf8_problem(body: bytes) -> str | None:
    """Why a request body is not UTF-8 (RFC 8259 requires it of JSON), or None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"the body is not UTF-8: byte {exc.start} is {body[exc.start]:#04x}; "
            "send JSON encoded as UTF-8"
        )
    return None


def json_bytes(content: Any) -> bytes:
    """``content`` as UTF-8 JSON that always encodes: text that is not Unicode (a model's
    answer, a name echoed in an error) is written as JSON escapes instead of failing;
    a NaN or infinity becomes null."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN or infinity
        content = _finite(content)
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
