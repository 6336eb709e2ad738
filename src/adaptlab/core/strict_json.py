"""JSON as the format defines it, with errors that say how to fix the line.

Python's :mod:`json` accepts NaN, Infinity and duplicate keys (the last silently
wins); data files, schemas and chat files read through :func:`parse_json` refuse them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class NotJsonError(ValueError):
    """A value that Python's json accepts and JSON does not (NaN, Infinity, duplicate keys)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _constant(name: str) -> Any:
    raise NotJsonError(
        f"{name} is not a JSON value (pandas writes it for a missing or non-finite number)",
        f"write the value as a string, or delete the record (pandas: df.dropna() before "
        f"to_json); {name} never becomes the text '{name.lower()}'",
    )


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJsonError(
            f"the number {text} is too large for a float",
            "write it as a string if it is meant as text",
        )
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise NotJsonError(
                f"key '{key}' appears twice in one object (the last would silently win)",
                f"keep one '{key}' in this record",
            )
        obj[key] = value
    return obj


def parse_json(raw: str) -> Any:
    """JSON as the format defines it: NaN, Infinity and duplicate keys are refused, and so
    is text that is not Unicode (a ``\\ud800`` escape without its pair decodes to a lone
    surrogate, which no file, database or tokenizer can take).

    Raises :class:`json.JSONDecodeError` for what is not JSON and :class:`NotJsonError`
    (with ``fix``) for what Python's json accepts and JSON or Unicode does not.
    """
    # strict=False: raw control characters (a tab) inside strings are common in
    # exports and harmless here; NUL bytes were refused when the file was decoded.
    value = json.loads(
        raw,
        strict=False,
        parse_constant=_constant,
        parse_float=_float,
        object_pairs_hook=_object,
    )
    if _SURROGATE_ESCAPE.search(raw):  # only an escape can spell a surrogate in JSON
        _refuse_lone_surrogates(value, "")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate, by position), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"character {exc.start + 1} is a lone surrogate (\\u{ord(text[exc.start]):04x})"
    return None


def _refuse_lone_surrogates(value: Any, where: str) -> None:
    if isinstance(value, str):
        problem = unicode_problem(value)
        if problem:
            raise NotJsonError(
                f"{where or 'the value'} is not valid Unicode: {problem}",
                "a \\uD800–\\uDBFF escape must be followed by its \\uDC00–\\uDFFF pair "
                "(the file was written from text cut in the middle of a character, e.g. an "
                "emoji): fix or remove the escape",
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where[6:]}.{key}" if where.startswith("field ") else key
            _refuse_lone_surrogates(key, f"a key in {where or 'the record'}")
            _refuse_lone_surrogates(item, f"field {inner}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_lone_surrogates(item, f"{where}[{i}]" if where else f"item [{i}]")


_TRAILING_COMMA = re.compile(r",\s*[}\]]")


def json_fix(raw: str, exc: json.JSONDecodeError) -> str:
    """The fix for a line Python's json could not parse, from its error message."""
    if _TRAILING_COMMA.search(raw) and exc.msg.startswith(
        ("Expecting property", "Expecting value")
    ):
        return "remove the trailing comma before the closing } or ] (JSON allows none)"
    if exc.msg == "Extra data" and "\r" in raw:
        return (
            "lines end in a bare CR (old Mac line endings): convert them, e.g. "
            "tr '\\r' '\\n' < FILE > NEW"
        )
    if exc.msg.startswith("Unexpected UTF-8 BOM"):
        return "remove the byte-order mark inside the file (files were concatenated?)"
    return 'each line must be one complete JSON object, e.g. {"text": "…", "label": "…"}'
