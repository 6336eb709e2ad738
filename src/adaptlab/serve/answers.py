"""One answer as JSON, the same for ``adaptlab predict`` and ``POST /v1/predict``;
and the inputs ``adaptlab predict`` reads (text lines or JSON Lines)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from adaptlab.core.errors import DataError
from adaptlab.core.strict_json import NotJsonError, parse_json
from adaptlab.core.types import Prediction

#: Longest input line ``adaptlab predict`` reads (characters); the server has its own limit.
MAX_LINE_CHARS = 1_000_000


def answer_json(pred: Prediction, task: str, candidate: str) -> dict[str, Any]:
    """``{"candidate", "label" | "output", "score", "status"?, "raw"?}`` for one answer.

    Classification answers a ``label`` (None when none could be read); extraction an
    ``output`` object (the parsed JSON, or None); generation an ``output`` string.
    ``score`` is the model's probability (encoders) or 1.0/0.0 for a parsed/unparsed
    generative answer. Generative answers add ``status`` and the model's ``raw`` text.
    """
    out: dict[str, Any] = {"candidate": candidate}
    if task == "classification":
        out["label"] = pred.label
    elif task == "extraction":
        out["output"] = _json_or_none(pred.label)
    else:
        out["output"] = pred.label
    out["score"] = pred.score
    if pred.status is not None:
        out["status"] = pred.status
    if pred.raw is not None:
        out["raw"] = pred.raw
    return out


def answer_text(pred: Prediction, task: str) -> str:
    """The answer as the content of a chat completion: the label, JSON or text."""
    if pred.label is None:
        return ""
    return pred.label


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class InputRow:
    text: str
    id: str | None
    line: int


def read_inputs(
    data: bytes, name: str, input_field: str, encoding: str = "utf-8-sig"
) -> Iterator[InputRow]:
    """Inputs from a file's bytes: JSON Lines (objects with ``input_field``, ``text`` or
    ``input``, and an optional ``id``) when the first non-empty line starts with ``{``,
    otherwise one input per non-empty line (blank lines separate; each answer keeps its
    input's line number as its id).

    Raises :class:`DataError` naming the line for bytes not in ``encoding``, a malformed
    JSON line, a missing field, a non-string or empty input, text that is not Unicode
    (a ``"\\ud800"`` escape alone) or an over-long line.
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not {encoding} text (byte {data[exc.start]:#x})",
            file=name,
            line=data.count(b"\n", 0, exc.start) + 1,
            fix="convert it to UTF-8 (iconv -f latin1 -t utf-8 FILE), or name its "
            "encoding with --encoding (latin-1, utf-16, cp1252, …)",
        ) from None
    yield from input_rows(_bounded(io.StringIO(text), name), name, input_field)


def _bounded(lines: Iterable[str], name: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise line_too_long(name, number)
        yield number, line


def line_too_long(name: str, line: int) -> DataError:
    """The error for an input line over :data:`MAX_LINE_CHARS` characters."""
    return DataError(
        f"line longer than {MAX_LINE_CHARS:,} characters",
        file=name,
        line=line,
        fix="split the input, or pass shorter texts",
    )


def input_rows(lines: Iterable[tuple[int, str]], name: str, input_field: str) -> Iterator[InputRow]:
    """Inputs from numbered lines, as :func:`read_inputs` reads them (JSON Lines when the
    first non-empty line starts with ``{``, else one input per non-empty line); lazy, so
    a stream is answered as it is read. Raises :class:`DataError` as :func:`json_row`."""
    mode: str | None = None
    for number, line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if mode is None:
            mode = "jsonl" if stripped.startswith("{") else "text"
        if mode == "text":
            yield InputRow(line.rstrip("\r\n"), None, number)
        else:
            yield json_row(stripped, number, name, input_field)


def json_row(text: str, number: int, name: str, input_field: str) -> InputRow:
    """One JSON Lines input of ``predict``: the text under ``input_field`` (or ``text`` /
    ``input``) and its optional ``id``. Raises :class:`DataError` naming ``name`` and
    ``number`` for a line that is not JSON (:func:`~adaptlab.core.strict_json.parse_json`:
    NaN, duplicate keys and lone surrogates included) or holds no input text."""
    try:
        obj = parse_json(text)
    except NotJsonError as exc:
        raise DataError(str(exc), file=name, line=number, fix=exc.fix) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON ({exc.msg})",
            file=name,
            line=number,
            fix="one JSON object per line, or plain text with one input per line",
        ) from None
    names = (input_field, "text", "input")
    field = next((f for f in names if isinstance(obj, dict) and f in obj), None)
    if field is None:
        also = "" if input_field == "text" else " (or 'text')"
        raise DataError(
            f"no '{input_field}' field in this line",
            file=name,
            line=number,
            fix=f"give every line a '{input_field}' field{also} holding the input",
        )
    value = obj[field]
    if not isinstance(value, str) or not value.strip():
        what = "empty" if isinstance(value, str) else f"{type(value).__name__}, not text"
        raise DataError(
            f"field '{field}' is {what}",
            file=name,
            line=number,
            fix="give every line a non-empty input text (a JSON string)",
        )
    ident = obj.get("id")
    return InputRow(value, None if ident is None else str(ident), number)
