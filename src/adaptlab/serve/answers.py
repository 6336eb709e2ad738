"""One answer as JSON, the same for ``adaptlab predict`` and ``POST /v1/predict``;
and the inputs ``adaptlab predict`` reads (text lines or JSON Lines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from adaptlab.errors import DataError
from adaptlab.strategies import Prediction

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


def read_inputs(fh: IO[str], name: str, input_field: str) -> Iterator[InputRow]:
    """Inputs from a text stream: JSON Lines (objects with ``input_field``, ``text`` or
    ``input``, and an optional ``id``) when the first non-empty line starts with ``{``,
    otherwise one input per non-empty line.

    Raises :class:`DataError` naming the line for a malformed JSON line, a missing
    field, a non-string input or an over-long line; nothing is skipped silently.
    """
    mode: str | None = None
    for number, line in enumerate(fh, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise DataError(
                f"line longer than {MAX_LINE_CHARS:,} characters",
                file=name,
                line=number,
                fix="split the input, or pass shorter texts",
            )
        stripped = line.strip()
        if not stripped:
            continue
        if mode is None:
            mode = "jsonl" if stripped.startswith("{") else "text"
        if mode == "text":
            yield InputRow(line.rstrip("\r\n"), None, number)
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"not valid JSON ({exc.msg})",
                file=name,
                line=number,
                fix="one JSON object per line, or plain text with one input per line",
            ) from None
        field = next(
            (f for f in (input_field, "text", "input") if isinstance(obj, dict) and f in obj), None
        )
        if field is None:
            raise DataError(
                f"no '{input_field}' field in this object",
                file=name,
                line=number,
                fix=f"give every line a '{input_field}' (or 'text') field with the input",
            )
        text = obj[field]
        if not isinstance(text, str):
            raise DataError(
                f"field '{field}' is {type(text).__name__}, not text",
                file=name,
                line=number,
                fix="make the input a JSON string",
            )
        ident = obj.get("id")
        yield InputRow(text, None if ident is None else str(ident), number)
