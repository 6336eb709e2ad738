"""JSON targets and answers: fields flattened to paths, JSON found in an answer, and
checked against a JSON schema.

The data checks (extraction targets), the prompting strategies (reading a model's
JSON answer) and the extraction metrics all read JSON the same way through here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

Scalar: TypeAlias = str | int | float | bool | None
FieldValue: TypeAlias = Scalar | list[Scalar]


def _is_scalar(x: object) -> bool:
    return x is None or isinstance(x, str | int | float | bool)


def flatten_fields(obj: Mapping[str, Any], prefix: str = "") -> dict[str, FieldValue]:
    """Flatten a JSON object into ``{path: value}``.

    * Nested objects become dotted paths: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.
    * A list whose items are all scalars stays one field holding the list; it is scored
      as a multiset (order ignored, duplicates counted).
    * Any other list (objects, nested lists, mixed) is indexed: ``items[0].name``; such
      items are matched by position.
    * Empty objects contribute no field; keys containing dots are not escaped.
    """
    out: dict[str, FieldValue] = {}
    for key, value in obj.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        _flatten_value(value, path, out)
    return out


def _flatten_value(value: Any, path: str, out: dict[str, FieldValue]) -> None:
    if isinstance(value, Mapping):
        out.update(flatten_fields(value, path))
    elif isinstance(value, list):
        if all(_is_scalar(v) for v in value):
            out[path] = list(value)
        else:
            for i, item in enumerate(value):
                _flatten_value(item, f"{path}[{i}]", out)
    elif _is_scalar(value):
        out[path] = value
    else:
        raise TypeError(f"{path}: {type(value).__name__} is not a JSON value")


_INDEX = re.compile(r"\[\d+\]")


def field_group(path: str) -> str:
    """The per-field reporting key: list indices dropped, ``items[3].sku`` -> ``items[].sku``."""
    return _INDEX.sub("[]", path)


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, _DECODER.decode(text)
    except ValueError:
        return False, None


def extract_json(text: str) -> tuple[bool, Any]:
    """Find the JSON in a model answer; returns ``(found, value)``.

    Accepted, first match wins:
    1. the whole answer (surrounding whitespace stripped) is one JSON value of any type;
    2. the body of the first fenced code block (```json, ```JSON or a bare ```) that is
       one JSON value;
    3. the first ``{`` in the answer from which a complete JSON object parses (the
       object ends at its balanced ``}``; anything after it is ignored). If an object is
       broken, the search goes on at the next ``{``, so an intact inner object may win.
    Strict JSON only: no trailing commas, no single quotes, no NaN/Infinity, no comments.
    """
    ok, value = _loads(text.strip())
    if ok:
        return True, value
    for match in _FENCE.finditer(text):
        if match.group(1).lower() in ("", "json", "jsonc", "json5"):
            ok, value = _loads(match.group(2).strip())
            if ok:
                return True, value
    start = text.find("{")
    while start != -1:
        try:
            value, _end = _DECODER.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        return True, value
    return False, None


def _error_path(path: Sequence[str | int]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Draft202012Validator:
    # Checking a schema against the meta-schema costs about a millisecond; a run
    # validates every answer against the same schema, so each is checked once.
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_json(text_or_obj: object, schema: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Parse (see :func:`extract_json`) and validate an answer against a JSON schema.

    Returns ``(obj, errors)``. ``obj`` is None only when no JSON was found (errors then
    says so); a schema-invalid object is returned with its errors, so a caller can score
    its fields and count schema violations separately. Errors read ``"$.path[0]: message"``
    (``$`` is the root), sorted by path. A ``str`` is always read as answer text; any
    other value is taken as already-parsed JSON and validated as is. Validation uses the
    Draft 2020-12 validator; an invalid schema raises
    :class:`jsonschema.exceptions.SchemaError` (a configuration error, not the model's).
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    if isinstance(text_or_obj, str):
        found, obj = extract_json(text_or_obj)
        if not found:
            return None, ["$: no JSON found in the answer"]
    else:
        obj = text_or_obj
    # Sorting on (path, message) puts the root's errors first, then fields in path order.
    errors = sorted(
        (_error_path(list(e.absolute_path)), e.message) for e in validator.iter_errors(obj)
    )
    return obj, [f"{path}: {message}" for path, message in errors]
